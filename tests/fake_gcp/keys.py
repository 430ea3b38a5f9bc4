"""API Keys: the keys `deploy.sh --gateway` creates, and their strings."""

import random
import string
import uuid

from tests.fake_gcp.common import EPOCH, PROJECT_NUMBER, error, timestamp, without

KEYS = r"/v2/projects/(?P<project>[^/]+)/locations/global/keys"
KEY_ALPHABET = string.ascii_letters + string.digits + "-_"


class ApiKeys:
    """Keys by name; each change answered with a finished operation."""

    def list_keys(self, request, project):
        return 200, {"keys": [without(key, "keyString") for key in self.keys.values()]}

    def create_key(self, request, project):
        uid = str(uuid.uuid4())
        name = f"projects/{PROJECT_NUMBER}/locations/global/keys/{uid}"
        body = request.json()
        key = {"name": name, "uid": uid, "displayName": body.get("displayName", ""),
               "restrictions": body.get("restrictions", {}), "etag": f'W/"{uid[:8]}"',
               "createTime": timestamp(EPOCH), "updateTime": timestamp(EPOCH),
               "keyString": "AIza" + "".join(random.choices(KEY_ALPHABET, k=35))}
        self.keys[name] = key
        return 200, self._key_operation(key)

    def get_key_string(self, request, project, uid):
        key = self._key(uid)
        if key is None:
            return 404, error(404, f"Key {uid} not found")
        return 200, {"keyString": key["keyString"]}

    def delete_key(self, request, project, uid):
        key = self._key(uid)
        if key is None:
            return 404, error(404, f"Key {uid} not found")
        del self.keys[key["name"]]
        return 200, self._key_operation(key)

    def _key(self, uid: str) -> dict | None:
        return next((key for key in self.keys.values() if key["uid"] == uid), None)

    def _key_operation(self, key: dict) -> dict:
        op = f"operations/akmf.p7-{uuid.uuid4()}"
        self.operations[op] = {
            "name": op, "done": True,
            "response": {"@type": "type.googleapis.com/google.api.apikeys.v2.Key",
                         **without(key, "keyString")}}
        return {"name": op}

    ROUTES = [
        ("GET", KEYS, list_keys),
        ("POST", KEYS, create_key),
        ("DELETE", KEYS + r"/(?P<uid>[^/]+)", delete_key),
        ("GET", KEYS + r"/(?P<uid>[^/]+)/keyString", get_key_string),
    ]
