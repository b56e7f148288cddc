#!/usr/bin/env python3
"""A fake tailscaled LocalAPI for scripts/netns-tailnet-test.sh: HTTP on a Unix socket,
answering GET /localapi/v0/status and GET /localapi/v0/whois?addr=IP:PORT with the JSON
tailscaled sends (field names from tailscale's ipn/ipnstate, tailcfg and apitype), for a
tailnet described in a small JSON file, as seen from one of its devices. Or failing on
purpose (--mode): forbidden (HTTP 403, as tailscaled answers a client it does not permit),
hang (never answers), garbage (HTTP 200, not JSON), close (closes without answering).

The tailnet file is a list of devices:
  [{"host": "a1", "login": "alice@example.com", "ips": ["100.64.1.1"], "online": true,
    "expired": false, "tags": [], "os": "linux", "sharee": false}, ...]

Usage: fake-localapi.py SOCKET --tailnet FILE --me IP [--mode MODE]
"""

import argparse
import http.server
import json
import os
import socketserver
import sys
import threading
import urllib.parse


def prefix(ip):
    return ip + ("/128" if ":" in ip else "/32")


def peer_status(i, d):
    online = d.get("online", True)
    status = {
        "ID": f"n{i}CNTRL",
        "PublicKey": f"nodekey:{i:064x}",
        "HostName": d["host"],
        "DNSName": f"{d['host']}.tail1234.ts.net.",
        "OS": d.get("os", "linux"),
        "UserID": 1000 + i,
        "TailscaleIPs": d["ips"],
        "AllowedIPs": [prefix(ip) for ip in d["ips"]],
        "Addrs": None,
        "CurAddr": "",
        "Relay": "fra",
        "RxBytes": 0,
        "TxBytes": 0,
        "Created": "2026-01-02T10:00:00Z",
        "LastWrite": "0001-01-01T00:00:00Z",
        "LastSeen": "0001-01-01T00:00:00Z" if online else "2026-11-28T09:00:00Z",
        "LastHandshake": "0001-01-01T00:00:00Z",
        "Online": online,
        "ExitNode": False,
        "ExitNodeOption": False,
        "Active": False,
        "InNetworkMap": True,
        "InMagicSock": True,
        "InEngine": False,
    }
    if d.get("tags"):
        status["Tags"] = d["tags"]
    if d.get("expired"):
        status["Expired"] = True
    if d.get("sharee"):
        status["ShareeNode"] = True
    return status


def user_of(i, d):
    if d.get("tags"):
        return {"ID": 1000 + i, "LoginName": "tagged-devices", "DisplayName": "Tagged Devices"}
    return {"ID": 1000 + i, "LoginName": d["login"], "DisplayName": d["login"].split("@")[0]}


def status_json(devices, me):
    mine = [i for i, d in enumerate(devices) if me in d["ips"]]
    if not mine:
        sys.exit(f"fake-localapi: no device has address {me}")
    me_i = mine[0]
    peers = {
        f"nodekey:{i:064x}": peer_status(i, d)
        for i, d in enumerate(devices)
        if i != me_i
    }
    return {
        "Version": "1.90.0-fake",
        "TUN": True,
        "BackendState": "Running",
        "HaveNodeKey": True,
        "AuthURL": "",
        "TailscaleIPs": devices[me_i]["ips"],
        "Self": peer_status(me_i, devices[me_i]),
        "Health": [],
        "MagicDNSSuffix": "tail1234.ts.net",
        "CurrentTailnet": {
            "Name": "example.com",
            "MagicDNSSuffix": "tail1234.ts.net",
            "MagicDNSEnabled": True,
        },
        "Peer": peers,
        "User": {str(1000 + i): user_of(i, d) for i, d in enumerate(devices)},
        "ClientVersion": None,
    }


def whois_json(devices, ip):
    for i, d in enumerate(devices):
        if ip in d["ips"]:
            node = {
                "ID": i,
                "StableID": f"n{i}CNTRL",
                "Name": f"{d['host']}.tail1234.ts.net.",
                "User": 1000 + i,
                "Key": f"nodekey:{i:064x}",
                "Addresses": [prefix(a) for a in d["ips"]],
                "AllowedIPs": [prefix(a) for a in d["ips"]],
                "Hostinfo": {"OS": d.get("os", "linux"), "Hostname": d["host"]},
                "Created": "2026-01-02T10:00:00Z",
                "Online": d.get("online", True),
                "ComputedName": d["host"],
                "ComputedNameWithHost": d["host"],
            }
            if d.get("tags"):
                node["Tags"] = d["tags"]
            return {"Node": node, "UserProfile": user_of(i, d), "CapMap": None}
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("socket")
    ap.add_argument("--tailnet", required=True)
    ap.add_argument("--me", required=True)
    ap.add_argument("--mode", default="answer",
                    choices=["answer", "forbidden", "hang", "garbage", "close"])
    args = ap.parse_args()
    with open(args.tailnet) as f:
        devices = json.load(f)
    status = json.dumps(status_json(devices, args.me)).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):  # a Unix socket has no client address to log
            pass

        def answer(self, code, body, kind="application/json"):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def do_GET(self):
            if self.headers.get("Host") not in (None, "", "local-tailscaled.sock"):
                return self.answer(403, b"invalid localapi request\n", "text/plain")
            if args.mode == "forbidden":
                return self.answer(403, b"status access denied\n", "text/plain")
            if args.mode == "hang":
                threading.Event().wait()
            if args.mode == "garbage":
                return self.answer(200, b"<html><body>hello</body></html>", "text/html")
            if args.mode == "close":
                self.close_connection = True
                return
            url = urllib.parse.urlparse(self.path)
            if url.path == "/localapi/v0/status":
                return self.answer(200, status)
            if url.path == "/localapi/v0/whois":
                addr = urllib.parse.parse_qs(url.query).get("addr", [""])[0]
                ip = addr[1:].split("]")[0] if addr.startswith("[") else addr.split(":")[0]
                found = whois_json(devices, ip)
                if found is None:
                    return self.answer(404, b"no match for IP:port\n", "text/plain")
                return self.answer(200, json.dumps(found).encode())
            return self.answer(404, b"404 page not found\n", "text/plain")

    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    if os.path.exists(args.socket):
        os.unlink(args.socket)
    with Server(args.socket, Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
