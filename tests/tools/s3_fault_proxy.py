#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 in front of a real S3 server (RADOS Gateway), for the
faults it cannot be made to give on demand: server errors. Prints the port it listens
on. The mode is read from MODE_FILE for each new connection:

  pass   bytes go both ways unchanged (the request's signature still matches: it
         signs the Host header the client sent, which the server checks as received)
  error  every request is answered 503 SlowDown, as S3 does when it sheds load

A connection passing bytes is closed when the mode changes, so that a client's kept-
alive connection meets the new mode at its next request.

  s3_fault_proxy.py UPSTREAM_PORT MODE_FILE
"""
import socket
import sys
import threading
import time

upstream_port = int(sys.argv[1])
mode_file = sys.argv[2]

ERROR_BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
              b'<Message>Please reduce your request rate.</Message></Error>')


def mode():
    try:
        with open(mode_file) as f:
            return f.read().strip()
    except OSError:
        return "pass"


def relay(src, dst, done):
    try:
        while not done.is_set():
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    done.set()


def serve_pass(client):
    try:
        up = socket.create_connection(("127.0.0.1", upstream_port))
    except OSError:
        client.close()
        return
    done = threading.Event()
    for a, b in ((client, up), (up, client)):
        threading.Thread(target=relay, args=(a, b, done), daemon=True).start()
    while not done.wait(0.1):
        if mode() != "pass":
            break
    done.set()
    for s in (client, up):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def serve_error(client):
    # Reads the request head (and whatever body came with it), answers, closes.
    client.settimeout(5)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            data = client.recv(65536)
            if not data:
                break
            buf += data
        client.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
                       b"Content-Length: " + str(len(ERROR_BODY)).encode() +
                       b"\r\nConnection: close\r\n\r\n" + ERROR_BODY)
        time.sleep(0.05)
    except OSError:
        pass
    client.close()


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        client, _ = listener.accept()
        handler = serve_pass if mode() == "pass" else serve_error
        threading.Thread(target=handler, args=(client,), daemon=True).start()


main()
