"""A run's figures as Markdown tables, each beside its same-run reference, and the targets."""

from bench import cloudrun, trees
from bench.servers import (ASGI_DECODING, ASGI_HELLO, CLOUD_RUN_SERVERS, CLOUD_RUN_SOURCES,
                           FLASK_HELLO, FUNCTION, INLINE, IRIS_PEERS, MLSERVER_XGBOOST, PIPELINE,
                           STACK_VARIANTS, THREADED, TREE_MODELS)

# Issue 9's targets, each a ratio to a reference in the same run or an absolute figure.
RPS_VS_FLASK_HELLO = 2.0
RPS_VS_ASGI_HELLO = 0.5
RPS_VS_PEER = 3.0
P99_VS_FLASK_HELLO = 1.0
COLD_VS_FLASK_HELLO = 2.0
ROWS_PER_S_1000 = 1_000_000
WORKER_PEAK_RSS_MIB = 64
# Issue 15's: rows/s of 1,000-row batches against reference (b) reading and decoding the
# same body, at each number of connections.
ROWS_VS_DECODING = 1.0
# Issue 24's: the cold start as a Cloud Run instance's (bench/cloudrun.py), against (a) so.
COLD_VS_FLASK_HELLO_CLOUD_RUN = 1.5
# Issue 21's, for each tree model against the linear pipeline on the same table (bench/trees.py),
# and its 1,000-row batches against its own library's predict_proba.
TREE_COLD_VS_LINEAR = 1.15
TREE_RPS_VS_LINEAR = 0.8
TREE_EXTRA_RSS_MIB = 16
TREE_BATCH_VS_LIBRARY = 1.0
TREE_RPS_VS_MLSERVER = 3.0  # the XGBoost model against MLServer's XGBoost runtime
# Issue 22's, for the XGBoost model: one row explained in process, and 100 rows against
# SHAP's own C++ TreeExplainer on the same rows (a time ratio: lower is better).
EXPLAIN_ONE_ROW_MS = 5.0
EXPLAIN_VS_SHAP = 2.0


def verdicts(r: dict) -> dict:
    """{target: {"figure", "target", "met", "reference"}}: "met" is None if not measured."""
    warm, cold = r["warm"], r["cold_start"]
    ours = warm[FUNCTION]
    found = {}

    def add(name, figure, target, higher_is_better, reference, shown=None):
        met = None if figure is None else (figure >= target if higher_is_better
                                           else figure <= target)
        found[name] = {"figure": figure, "target": target, "met": met,
                       "higher_is_better": higher_is_better, "reference": reference}
        if shown is not None:  # (ours, theirs, unit): figures a target's name alone can't say
            found[name]["shown"] = shown

    def ratio(a, b):
        return None if a is None or b is None else a / b

    def rps(name):
        return warm[name]["rps"] if name in warm else None

    add("requests/s vs (a)", ratio(ours["rps"], rps(FLASK_HELLO)), RPS_VS_FLASK_HELLO, True,
        FLASK_HELLO)
    add("requests/s vs (b)", ratio(ours["rps"], rps(ASGI_HELLO)), RPS_VS_ASGI_HELLO, True,
        ASGI_HELLO)
    for peer in IRIS_PEERS:
        add(f"requests/s vs {peer[:3]}", ratio(ours["rps"], rps(peer)), RPS_VS_PEER, True, peer)
    add("p99 vs (a)", ratio(ours["p99_ms"], warm.get(FLASK_HELLO, {}).get("p99_ms")),
        P99_VS_FLASK_HELLO, False, FLASK_HELLO)
    add("cold start vs (a)", ratio(cold[FUNCTION]["median_s"],
                                   cold.get(FLASK_HELLO, {}).get("median_s")),
        COLD_VS_FLASK_HELLO, False, FLASK_HELLO)
    built = {server: cold.get(CLOUD_RUN_SERVERS[server, cloudrun.BUILT], {}).get("median_s")
             for server in CLOUD_RUN_SOURCES}
    add(f"cold start vs (a), {cloudrun.BUILT}", ratio(built[FUNCTION], built[FLASK_HELLO]),
        COLD_VS_FLASK_HELLO_CLOUD_RUN, False, CLOUD_RUN_SERVERS[FLASK_HELLO, cloudrun.BUILT],
        ("", "not measured") if None in built.values() else
        (f"{built[FUNCTION]:.2f} s", f"(a) Flask hello {built[FLASK_HELLO]:.2f} s"))
    add("rows/s, 1,000-row batches", r["batch"].get("instances 1000", {}).get("rows_per_s"),
        ROWS_PER_S_1000, True, None)
    add("worker peak RSS, MiB", r["peak_rss_mib"][FUNCTION], WORKER_PEAK_RSS_MIB, False, None)
    sweep = r.get("batch_concurrency", {})
    for c, ours_c in sweep.get(FUNCTION, {}).items():
        theirs = sweep.get(ASGI_DECODING, {}).get(c, {}).get("rows_per_s")
        add(f"1,000-row batches vs (b) decoding, {c} conns",
            ratio(ours_c["rows_per_s"], theirs), ROWS_VS_DECODING, True, ASGI_DECODING)
    linear = TREE_MODELS[trees.LINEAR]
    peak = r["peak_rss_mib"]
    for model in trees.MODELS[1:]:
        server = TREE_MODELS[model]
        if server not in warm or linear not in warm:
            continue
        add(f"{model}: cold start vs linear", ratio(cold[server]["median_s"],
                                                    cold[linear]["median_s"]),
            TREE_COLD_VS_LINEAR, False, linear,
            (f"{cold[server]['median_s']:.2f} s", f"linear {cold[linear]['median_s']:.2f} s"))
        add(f"{model}: requests/s vs linear", ratio(rps(server), rps(linear)),
            TREE_RPS_VS_LINEAR, True, linear,
            (f"{rps(server):,.0f} req/s", f"linear {rps(linear):,.0f}"))
        add(f"{model}: worker peak RSS over linear, MiB", peak[server] - peak[linear],
            TREE_EXTRA_RSS_MIB, False, None,
            (f"{peak[server]:.1f} MiB", f"linear {peak[linear]:.1f} MiB"))
        if model == trees.XGBOOST:
            add("xgboost: requests/s vs MLServer's XGBoost runtime",
                ratio(rps(server), rps(MLSERVER_XGBOOST)), TREE_RPS_VS_MLSERVER, True,
                MLSERVER_XGBOOST, None if rps(MLSERVER_XGBOOST) is None else
                (f"{rps(server):,.0f} req/s", f"MLServer {rps(MLSERVER_XGBOOST):,.0f}"))
        batch = r.get("tree_batches", {}).get(model)
        if batch is not None:
            add(f"{model}: 1,000 rows vs its library's predict_proba",
                batch["library_ms"] / batch["function_ms"], TREE_BATCH_VS_LIBRARY, True, model,
                (f"{batch['function_ms']:.1f} ms", f"{model} {batch['library_ms']:.1f} ms"))
    explained = r.get("tree_explanations", {}).get(trees.XGBOOST)
    if explained is not None:
        add("xgboost: one row explained, ms", explained["one_ms"], EXPLAIN_ONE_ROW_MS, False,
            None)
        add("xgboost: 100 rows explained vs SHAP's C++",
            explained["hundred_ms"] / explained["shap_hundred_ms"], EXPLAIN_VS_SHAP, False,
            "shap", (f"{explained['hundred_ms']:.1f} ms",
                     f"shap {explained['shap_hundred_ms']:.1f} ms"))
    return found


def markdown(rows: list) -> str:
    """Rows of cells (the first row the header) as an aligned Markdown table."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def servers_table(r: dict) -> str:
    """One row per server: cold start, requests/s and latency, memory of its process tree."""
    conns = r["config"]["connections"]
    ours = r["warm"][FUNCTION]["rps"]
    rows = [("server", "cold start", f"one-flower req/s, {conns} conns", "vs iris-predict",
             "p50 / p99", "server CPU per request", "memory (RSS sum; PSS sum)")]
    for name, w in r["warm"].items():
        cold = r["cold_start"].get(name)
        mem = r["memory_mib"][name]
        rows.append((name, f"{cold['median_s']:.2f} s" if cold else "",
                     f"{w['rps']:,.0f}", f"{w['rps'] / ours:.2f}x",
                     f"{w['p50_ms']:.2f} / {w['p99_ms']:.2f} ms", f"{w['cpu_us']:.0f} µs",
                     f"{mem['rss']:.0f} MiB; {mem['pss']:.0f} MiB ({mem['processes']} proc.)"))
    return markdown(rows)


def targets_table(r: dict) -> str:
    rows = [("target", "iris-predict", "same-run reference", "ratio", "target", "verdict")]
    warm, cold = r["warm"], r["cold_start"]
    for name, v in r["targets"].items():
        ref = v["reference"]
        if "shown" in v:
            ours, theirs = v["shown"]
        elif name.startswith("requests/s"):
            ours = f"{warm[FUNCTION]['rps']:,.0f} req/s"
            theirs = f"{ref} {warm[ref]['rps']:,.0f}" if ref in warm else f"{ref}: not measured"
        elif name.startswith("p99"):
            ours = f"{warm[FUNCTION]['p99_ms']:.2f} ms"
            theirs = f"{ref} {warm[ref]['p99_ms']:.2f} ms" if ref in warm else "not measured"
        elif name.startswith("cold"):
            ours = f"{cold[FUNCTION]['median_s']:.2f} s"
            theirs = f"{ref} {cold[ref]['median_s']:.2f} s" if ref in cold else "not measured"
        elif name.startswith("1,000-row batches"):
            c = name.rsplit(", ", 1)[1].split()[0]
            sweep = r["batch_concurrency"]
            ours = f"{sweep[FUNCTION][c]['rows_per_s']:,.0f} rows/s"
            theirs = f"{ref} {sweep[ref][c]['rows_per_s']:,.0f}" if c in sweep.get(ref, {}) \
                else "not measured"
        else:
            ours, theirs = (f"{v['figure']:,.0f}" if v["figure"] is not None else ""), ""
        ratio = f"{v['figure']:.2f}x" if ref and v["figure"] is not None else ""
        sign = ">=" if v["higher_is_better"] else "<="
        goal = f"{sign} {v['target']:,}" + ("x" if ref else "")
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[v["met"]]
        rows.append((name, ours, theirs, ratio, goal, verdict))
    return markdown(rows)


def cloud_run_table(r: dict) -> str:
    """Cold starts as a Cloud Run instance's, in each bytecode condition (bench/cloudrun.py)."""
    rows = [("cold start", *CLOUD_RUN_SOURCES, "iris-predict vs (a)", "iris-predict vs (b)")]
    cold = r["cold_start"]
    for condition in cloudrun.CONDITIONS:
        s = {server: cold.get(CLOUD_RUN_SERVERS[server, condition], {}).get("median_s")
             for server in CLOUD_RUN_SOURCES}
        if None in s.values():
            continue
        rows.append((condition, *(f"{v:.3f} s" for v in s.values()),
                     f"{s[FUNCTION] / s[FLASK_HELLO]:.2f}x", f"{s[FUNCTION] / s[ASGI_HELLO]:.2f}x"))
    s = {server: cold[server]["median_s"] for server in CLOUD_RUN_SOURCES}
    rows.append(("this machine's venv and tree", *(f"{v:.3f} s" for v in s.values()),
                 f"{s[FUNCTION] / s[FLASK_HELLO]:.2f}x", f"{s[FUNCTION] / s[ASGI_HELLO]:.2f}x"))
    return markdown(rows)


def stack_table(r: dict) -> str:
    """What httptools, uvloop and orjson are worth, each against what it replaces."""
    warm, ip = r["warm"], r["inprocess"]
    ours = warm[ASGI_HELLO]["rps"]
    rows = [("stack", "figure", "same-run reference", "ratio")]
    for name in STACK_VARIANTS:
        if name in warm:
            rows.append(("(b) ASGI hello on httptools + uvloop, req/s", f"{ours:,.0f}",
                         f"{name} {warm[name]['rps']:,.0f}", f"{ours / warm[name]['rps']:.2f}x"))
    for rows_, j in ip["json"].items():
        rows.append((f"orjson, decode + encode, {rows_}-row body and answer",
                     f"{j['orjson_us']:.1f} µs", f"json (stdlib) {j['stdlib_us']:.1f} µs",
                     f"{j['orjson_us'] / j['stdlib_us']:.2f}x"))
    return markdown(rows)


def batch_table(r: dict) -> str:
    rows = [("batch, one connection", "iris-predict rows/s", "(b) ASGI hello, same body",
             "ratio")]
    for name, b in r["batch"].items():
        rows.append((f"{name} rows ({b['bytes']:,} bytes)", f"{b['rows_per_s']:,.0f}",
                     f"{b['hello_rows_per_s']:,.0f}",
                     f"{b['rows_per_s'] / b['hello_rows_per_s']:.2f}x"))
    return markdown(rows)


def batch_concurrency_table(r: dict) -> str:
    """Rows/s (and server CPU per request) of 1,000-row batches against connections."""
    sweep = r["batch_concurrency"]
    names = [n for n in (FUNCTION, THREADED, ASGI_DECODING) if n in sweep]
    rows = [("connections", *(f"{n}: rows/s (CPU per request)" for n in names),
             "iris-predict vs (b) decoding")]
    for c in sweep[FUNCTION]:
        cells = [f"{sweep[n][c]['rows_per_s']:,.0f} ({sweep[n][c]['cpu_us']:.0f} µs)"
                 for n in names]
        ratio = sweep[FUNCTION][c]["rows_per_s"] / sweep[ASGI_DECODING][c]["rows_per_s"]
        rows.append((c, *cells, f"{ratio:.2f}x"))
    return markdown(rows)


def pipeline_table(r: dict) -> str:
    """The train.py pipeline model beside the bundled iris model, served alike."""
    warm, cold, peak = r["warm"], r["cold_start"], r["peak_rss_mib"]
    if PIPELINE not in warm:
        return f"{PIPELINE}: not measured"
    rows = [("one row", "iris-predict (iris)", "train.py pipeline (docs/garden.csv)", "ratio")]
    for label, figure, fmt in (("requests/s, 8 conns", lambda n: warm[n]["rps"], "{:,.0f}"),
                               ("server CPU per request, µs", lambda n: warm[n]["cpu_us"],
                                "{:.0f}"),
                               ("cold start, s", lambda n: cold[n]["median_s"], "{:.2f}"),
                               ("worker peak RSS, MiB", lambda n: peak[n], "{:.1f}")):
        ours, theirs = figure(FUNCTION), figure(PIPELINE)
        rows.append((label, fmt.format(ours), fmt.format(theirs), f"{theirs / ours:.2f}x"))
    return markdown(rows)


def trees_table(r: dict) -> str:
    """The tree models beside the linear pipeline on the same table (bench/trees.py)."""
    warm, cold, peak = r["warm"], r["cold_start"], r["peak_rss_mib"]
    batches = r.get("tree_batches", {})
    servers = [s for s in TREE_MODELS.values() if s in warm]
    if not servers:
        return "tree models: not measured"
    rows = [("one row", *servers)]
    for label, figure, fmt in (("requests/s, 8 conns", lambda n: warm[n]["rps"], "{:,.0f}"),
                               ("server CPU per request, µs", lambda n: warm[n]["cpu_us"],
                                "{:.0f}"),
                               ("cold start, s", lambda n: cold[n]["median_s"], "{:.2f}"),
                               ("worker peak RSS, MiB", lambda n: peak[n], "{:.1f}")):
        rows.append((label, *(fmt.format(figure(n)) for n in servers)))
    by_server = {server: model for model, server in TREE_MODELS.items()}
    rows.append(("1,000 rows in process, ms: function / library",
                 *(("{function_ms:.1f} / {library_ms:.1f}".format(**batches[by_server[n]])
                    if by_server[n] in batches else "") for n in servers)))
    explained = r.get("tree_explanations", {})
    for label, fmt in (("explained, 1 row, ms: function / SHAP's C++",
                        "{one_ms:.2f} / {shap_one_ms:.2f}"),
                       ("explained, 100 rows, ms: function / SHAP's C++",
                        "{hundred_ms:.1f} / {shap_hundred_ms:.1f}"),
                       ("first explanation (paths built), ms", "{first_ms:.1f}")):
        rows.append((label, *((fmt.format(**explained[by_server[n]])
                               if by_server[n] in explained else "") for n in servers)))
    return markdown(rows)


def stall_table(r: dict) -> str:
    s = r["stall"]
    rows = [("one-flower requests", "alone p50 / p99", "with 10,000-row batches p50 / p99",
             "p99 ratio", "batch rows/s meanwhile")]
    for name in (FUNCTION, INLINE):
        label = "shipped (big batches on a thread)" if name == FUNCTION else "all inline"
        for c, cases in s[name].items():
            alone, busy = cases["alone"], cases["with batches"]
            rows.append((f"{label}, {c} conns",
                         f"{alone['p50_ms']:.2f} / {alone['p99_ms']:.2f} ms",
                         f"{busy['p50_ms']:.2f} / {busy['p99_ms']:.2f} ms",
                         f"{busy['p99_ms'] / alone['p99_ms']:.1f}x",
                         f"{busy['batch_rows_per_s']:,.0f}"))
    return markdown(rows)


def concurrency_table(r: dict) -> str:
    c = r["concurrency"]
    every, rows_ = r["config"]["mix_every"], r["config"]["mix_rows"]
    rows = [("concurrency", "one flower: req/s", "p50 / p99",
             f"mix (1 in {every} a {rows_:,}-row batch): req/s", "p50 / p99")]
    for level, one in c["one flower"].items():
        mix = c["mix"][level]
        rows.append((level, f"{one['rps']:,.0f}", f"{one['p50_ms']:.2f} / {one['p99_ms']:.2f} ms",
                     f"{mix['rps']:,.0f}", f"{mix['p50_ms']:.2f} / {mix['p99_ms']:.2f} ms"))
    return markdown(rows)


def inprocess_table(r: dict) -> str:
    ip = r["inprocess"]
    rows = [("in process, one flower", "µs", "same-run reference", "ratio")]
    rows.append(("whole request through the ASGI app", f"{ip['handler_us']:.1f}",
                 f"(b) hello {ip['hello_handler_us']:.1f} µs",
                 f"{ip['handler_us'] / ip['hello_handler_us']:.2f}x"))
    for stage in ("decode", "parse", "predict", "shape", "encode", "log"):
        us = ip[stage + "_us"]
        rows.append((f"  {stage}", f"{us:.1f}", f"request {ip['handler_us']:.0f} µs",
                     f"{us / ip['handler_us']:.2f}x"))
    rows.append(("  predict vs scikit-learn predict + predict_proba", f"{ip['predict_us']:.1f}",
                 f"scikit-learn {ip['sklearn_predict_us']:.0f} µs",
                 f"{ip['predict_us'] / ip['sklearn_predict_us']:.2f}x"))
    b = ip["batch_1000"]
    rows.append(("1,000-row batch, whole request through the ASGI app", f"{b['handler_us']:.1f}",
                 f"(b) decoding {b['hello_decoding_us']:.1f} µs",
                 f"{b['handler_us'] / b['hello_decoding_us']:.2f}x"))
    for stage in ("decode", "parse", "answer", "encode"):
        us = b[stage + "_us"]
        rows.append((f"  {stage}", f"{us:.1f}", f"request {b['handler_us']:.0f} µs",
                     f"{us / b['handler_us']:.2f}x"))
    big = ip["big_batch_ms"]
    total = sum(big.values())
    for stage, ms in big.items():
        where = "worker thread" if stage == "answer" else "event loop"
        rows.append((f"10,000-row batch: {stage} ({where})", f"{ms * 1e3:,.0f}",
                     f"all stages {total:.1f} ms", f"{ms / total:.2f}x"))
    return markdown(rows)


def render(r: dict) -> str:
    m = r["machine"]
    parts = [f"{m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, load average "
             f"{m['load_average'][0]:.1f} at the end; load tool {r['load_tool']}; "
             f"{r['seconds']:.0f} s"]
    for name, why in r["unavailable"].items():
        parts.append(f"{name}: not measured: {why.splitlines()[0]}")
    parts += [targets_table(r), servers_table(r), cloud_run_table(r), stack_table(r), batch_table(r),
              batch_concurrency_table(r), pipeline_table(r), trees_table(r), stall_table(r),
              concurrency_table(r), inprocess_table(r)]
    return "\n\n".join(parts)
