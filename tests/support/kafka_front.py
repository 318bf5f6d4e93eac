#!/usr/bin/env python3
"""A SASL and TLS front for a Kafka broker that has neither (the tests' tansu).

It listens on 127.0.0.1 (a free port, printed first as `listening PORT`), terminates
TLS when given a certificate (Python's ssl), and authenticates each connection itself
before anything reaches the broker:
- ApiVersions is passed to the broker and its answer rewritten to advertise
  SaslHandshake v1 and SaslAuthenticate v0-v1;
- SaslHandshake (17) v1 takes a mechanism among those with users;
- SaslAuthenticate (36) v0-v1 checks PLAIN tokens against the users given, and runs
  the server side of SCRAM-SHA-256 and SCRAM-SHA-512 with the scramp library
  (RFC 5802/7677): server-first, then the client's proof checked and server-final;
- any other request before authentication closes the connection, as Kafka does; a
  failed authentication is answered SASL_AUTHENTICATION_FAILED (58), then closed.
After authentication every frame is passed on unchanged, both ways, except Metadata
answers (v1-v8), whose brokers are rewritten to the front's own address so the client
keeps talking to it.

Usage: kafka_front.py --broker HOST:PORT [--user MECHANISM:NAME:PASSWORD ...]
                      [--cert PEM --key PEM]
Without --user no SASL is asked (TLS termination only). One line per event on stdout:
`tls-failed REASON`, `plaintext-on-tls`, `auth-ok MECHANISM NAME`,
`auth-failed MECHANISM NAME REASON`, `refused API_KEY`, and `produce` for each Produce
request passed on (the records took the path through the front).
"""
import argparse
import socket
import ssl
import struct
import sys
import threading

from scramp import ScramMechanism

PRODUCE, METADATA, SASL_HANDSHAKE, API_VERSIONS, SASL_AUTHENTICATE = 0, 3, 17, 18, 36
UNSUPPORTED_VERSION, UNSUPPORTED_SASL_MECHANISM = 35, 33
SASL_AUTHENTICATION_FAILED = 58
SCRAM_ITERATIONS = 4096

out_lock = threading.Lock()


def say(*words):
    with out_lock:
        print(*words, flush=True)


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_frame(sock):
    (size,) = struct.unpack(">i", read_exact(sock, 4))
    return read_exact(sock, size)


def send_frame(sock, payload):
    sock.sendall(struct.pack(">i", len(payload)) + payload)


class Reader:
    def __init__(self, buf, at=0):
        self.buf, self.at = buf, at

    def take(self, n):
        if self.at + n > len(self.buf):
            raise ValueError("truncated")
        b = self.buf[self.at : self.at + n]
        self.at += n
        return b

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def bytes(self):
        n = self.i32()
        return b"" if n < 0 else self.take(n)


def string(s):
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def request_header(frame):
    """(api key, version, correlation id, the body's offset) of a request frame with
    header v1 (every version this front reads before authentication)."""
    r = Reader(frame)
    api, version, correlation = r.i16(), r.i16(), r.i32()
    r.string()  # client id
    return api, version, correlation, r.at


def answer(correlation, body):
    return struct.pack(">i", correlation) + body


def api_versions_answer(body, version):
    """The broker's ApiVersions v0-v2 answer, advertising SASL as this front speaks it."""
    r = Reader(body)
    error = r.i16()
    apis = {}
    for _ in range(r.i32()):
        key, lo, hi = r.i16(), r.i16(), r.i16()
        apis[key] = (lo, hi)
    rest = body[r.at :]  # throttle_time_ms from v1
    apis[SASL_HANDSHAKE] = (1, 1)
    apis[SASL_AUTHENTICATE] = (0, 1)
    out = struct.pack(">hi", error, len(apis))
    for key in sorted(apis):
        out += struct.pack(">hhh", key, *apis[key])
    return out + (rest if version >= 1 else b"")


def metadata_answer(body, version, host, port):
    """A Metadata v1-v8 answer with every broker at (host, port)."""
    r = Reader(body)
    head = r.take(4) if version >= 3 else b""  # throttle_time_ms
    brokers = []
    for _ in range(r.i32()):
        node, _, _, rack = r.i32(), r.string(), r.i32(), r.string()
        brokers.append((node, rack))
    out = head + struct.pack(">i", len(brokers))
    for node, rack in brokers:
        out += struct.pack(">i", node) + string(host) + struct.pack(">i", port) + string(rack)
    return out + body[r.at :]


class Authenticator:
    """One connection's SASL exchange: mechanism, then tokens until done."""

    def __init__(self, users):
        self.users = users  # {mechanism: {name: password}}
        self.mechanism = None
        self.scram = None
        self.name = "?"

    def handshake(self, mechanism):
        if mechanism not in self.users:
            return False
        self.mechanism = mechanism
        return True

    def step(self, token):
        """(done, token to send back); raises ValueError on refusal."""
        known = self.users[self.mechanism]
        if self.mechanism == "PLAIN":
            parts = token.split(b"\0")
            if len(parts) != 3:
                raise ValueError("malformed PLAIN token")
            self.name = parts[1].decode(errors="replace")
            if known.get(self.name) != parts[2].decode(errors="replace"):
                raise ValueError("invalid credentials")
            return True, b""
        if self.scram is None:
            mech = ScramMechanism(self.mechanism)
            infos = {
                n: mech.make_auth_info(p, iteration_count=SCRAM_ITERATIONS)
                for n, p in known.items()
            }

            def auth_fn(name):
                self.name = name
                if name not in infos:
                    raise ValueError("unknown user")
                return infos[name]

            self.scram = mech.make_server(auth_fn)
            self.scram.set_client_first(token.decode())
            return False, self.scram.get_server_first().encode()
        self.scram.set_client_final(token.decode())
        return True, self.scram.get_server_final().encode()


class Front:
    def __init__(self, args):
        bhost, bport = args.broker.rsplit(":", 1)
        self.broker = (bhost, int(bport))
        self.users = {}
        for u in args.user or []:
            mechanism, name, password = u.split(":", 2)
            self.users.setdefault(mechanism, {})[name] = password
        self.tls = None
        if args.cert:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(args.cert, args.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def serve(self):
        say("listening", self.port)
        while True:
            sock, _ = self.listener.accept()
            threading.Thread(target=self.connection, args=(sock,), daemon=True).start()

    def connection(self, sock):
        upstream = None
        try:
            if self.tls is not None:
                sock = self.terminate_tls(sock)
                if sock is None:
                    return
            upstream = socket.create_connection(self.broker)
            if self.users and not self.authenticate(sock, upstream):
                return
            self.relay(sock, upstream)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            for s in (sock, upstream):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def terminate_tls(self, sock):
        first = sock.recv(1, socket.MSG_PEEK)
        if first and first != b"\x16":
            say("plaintext-on-tls")
            sock.close()
            return None
        try:
            return self.tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            say("tls-failed", str(e).replace("\n", " "))
            sock.close()
            return None

    def authenticate(self, sock, upstream):
        """Answers ApiVersions and SASL until the client is authenticated; False
        when the connection is to be closed."""
        auth = Authenticator(self.users)
        while True:
            frame = read_frame(sock)
            api, version, correlation, at = request_header(frame)
            body = Reader(frame, at)
            if api == API_VERSIONS:
                if version > 2:
                    err = struct.pack(">hi", UNSUPPORTED_VERSION, 0)
                    send_frame(sock, answer(correlation, err))
                    continue
                send_frame(upstream, frame)
                reply = read_frame(upstream)
                rewritten = api_versions_answer(reply[4:], version)
                send_frame(sock, answer(correlation, rewritten))
            elif api == SASL_HANDSHAKE and version == 1 and auth.mechanism is None:
                mechanism = body.string()
                ok = auth.handshake(mechanism)
                offered = sorted(self.users)
                reply = struct.pack(">hi", 0 if ok else UNSUPPORTED_SASL_MECHANISM, len(offered))
                reply += b"".join(string(m) for m in offered)
                send_frame(sock, answer(correlation, reply))
                if not ok:
                    say("auth-failed", mechanism, "-", "mechanism not offered")
                    return False
            elif api == SASL_AUTHENTICATE and version <= 1 and auth.mechanism is not None:
                token = body.bytes()
                try:
                    done, back = auth.step(token)
                except Exception as e:  # scramp refuses with its own exceptions
                    message = (
                        "Authentication failed during authentication due to invalid "
                        f"credentials with SASL mechanism {auth.mechanism}"
                    )
                    reply = struct.pack(">h", SASL_AUTHENTICATION_FAILED) + string(message)
                    reply += struct.pack(">i", 0) + (struct.pack(">q", 0) if version >= 1 else b"")
                    send_frame(sock, answer(correlation, reply))
                    say("auth-failed", auth.mechanism, auth.name, str(e).replace("\n", " "))
                    return False
                reply = struct.pack(">h", 0) + string(None) + struct.pack(">i", len(back)) + back
                reply += struct.pack(">q", 0) if version >= 1 else b""
                send_frame(sock, answer(correlation, reply))
                if done:
                    say("auth-ok", auth.mechanism, auth.name)
                    return True
            else:
                say("refused", api)
                return False

    def relay(self, sock, upstream):
        """Frames both ways; Metadata answers point at the front."""
        asked = {}
        lock = threading.Lock()

        def answers():
            try:
                while True:
                    frame = read_frame(upstream)
                    (correlation,) = struct.unpack(">i", frame[:4])
                    with lock:
                        api, version = asked.pop(correlation, (None, None))
                    if api == METADATA:
                        if not 1 <= version <= 8:
                            say("refused", f"metadata-v{version}")
                            break
                        body = metadata_answer(frame[4:], version, "127.0.0.1", self.port)
                        frame = frame[:4] + body
                    send_frame(sock, frame)
            except (EOFError, OSError, ValueError):
                pass
            for s in (sock, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=answers, daemon=True).start()
        while True:
            frame = read_frame(sock)
            api, version, correlation, _ = request_header(frame)
            with lock:
                asked[correlation] = (api, version)
            if api == PRODUCE:
                say("produce")
            send_frame(upstream, frame)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--broker", required=True)
    p.add_argument("--user", action="append")
    p.add_argument("--cert")
    p.add_argument("--key")
    Front(p.parse_args()).serve()


if __name__ == "__main__":
    sys.exit(main())
