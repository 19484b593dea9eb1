#!/usr/bin/env python3
"""A chat bot's webhook: the messaging platform POSTs the photo a customer sent, the reply lists
the shop's most similar products. Python's standard library only; VS_API is visual_search_web."""
import json, os, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API = os.environ.get("VS_API", "http://127.0.0.1:8088").rstrip("/")
AUTH = {"Authorization": "Bearer " + os.environ["VS_API_TOKEN"]} if "VS_API_TOKEN" in os.environ else {}

def reply(photo, n=5):
    req = urllib.request.Request(f"{API}/api/v1/search?n={n}", data=photo, method="POST",
                                 headers={"Content-Type": "application/octet-stream", **AUTH})
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            found = json.load(answer)["results"]
        return "You might like:\n" + "\n".join(f"- {p['name']} ({p['category']}) {API}{p['image_url']}" for p in found)
    except urllib.error.HTTPError as e:  # the API's errors are JSON: {"error", "sqlstate", "status"}
        return f"Sorry, I could not use that photo: {json.load(e).get('error')}"
    except (OSError, ValueError) as e:  # the shop's server unreachable, or no JSON from it
        return f"Sorry, the shop cannot search right now ({e})"

class Webhook(BaseHTTPRequestHandler):
    def do_POST(self):
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > 10 << 20:
            return self.send_error(413 if length.isdigit() else 411)
        body = json.dumps({"reply": reply(self.rfile.read(int(length)))}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8090"))), Webhook).serve_forever()
