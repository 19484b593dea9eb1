#!/usr/bin/env python3
"""A chat bot's webhook: the messaging platform POSTs the photo a customer sent, the reply lists
the shop's most similar products. Python's standard library only; VS_API is visual_search_web."""
import json, os, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

API = os.environ.get("VS_API", "http://127.0.0.1:8088").rstrip("/")
AUTH = {"Authorization": "Bearer " + os.environ["VS_API_TOKEN"]} if "VS_API_TOKEN" in os.environ else {}

def similar(photo, n=5):
    req = urllib.request.Request(f"{API}/api/v1/search?n={n}", data=photo, method="POST",
                                 headers={"Content-Type": "application/octet-stream", **AUTH})
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as e:  # the API's errors are JSON as well
        return json.load(e)

class Webhook(BaseHTTPRequestHandler):
    def do_POST(self):
        photo = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 10 << 20))
        found = similar(photo)
        if "results" in found:
            text = "You might like:\n" + "\n".join(f"- {p['name']} ({p['category']}) {API}{p['image_url']}" for p in found["results"])
        else:
            text = f"Sorry, I could not use that photo: {found['error']}"
        body = json.dumps({"reply": text}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)

HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8090"))), Webhook).serve_forever()
