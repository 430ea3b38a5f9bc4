"""Which requests the function answers: its methods, and the paths it refuses.

The framework routes every path to the handler but for two it answers itself.
"""

# What the function answers on every path; HEAD is answered as GET, unadvertised.
METHODS = ("GET", "POST", "OPTIONS")
ALLOW = ", ".join(METHODS)
# Paths browsers and crawlers ask every host for; functions-framework answers them 404.
NOT_FOUND = ("/favicon.ico", "/robots.txt")
