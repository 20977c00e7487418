#!/usr/bin/env python3
"""A greeter.v1.Greeter client on grpcio (gRPC's C core): an implementation of the
protocol independent of tonic, for the gateway's gRPC tests. No protoc: the few
protobuf fields are encoded and decoded by hand.

  greeter_client.py --target HOST:PORT [--ca CA.pem --server-name NAME
                    [--cert CRT --key KEY]] CALL [options]

CALL is unary, server_stream, client_stream, bidi or health. Without --ca the channel
is h2c (no TLS). Prints one JSON line:
  {"ok": true, "messages": [...], "servers": [...], ...}
  {"ok": false, "code": "DEADLINE_EXCEEDED", "details": "...", "trailers": {...}, ...}
and exits 0 either way (2 for a usage error).
"""

import argparse
import json
import sys

import grpc

SERVICE = "/greeter.v1.Greeter/"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
MAX_MESSAGE = 32 << 20
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value) if value else b""


def field_bytes(number, value):
    return varint(number << 3 | 2) + varint(len(value)) + value if value else b""


def fields(data):
    """(number, value) of each field: an int for varints, bytes for length-delimited."""
    i = 0

    def read_varint():
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = read_varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, read_varint()
        elif wire == 2:
            length = read_varint()
            yield number, data[i : i + length]
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")


def hello_request(req):
    """HelloRequest {name=1, count=2, payload=3, delay_ms=4, status=5, reply_size=6}."""
    return (
        field_bytes(1, req["name"].encode())
        + field_varint(2, req["count"])
        + field_bytes(3, req["payload"])
        + field_varint(4, req["delay_ms"])
        + field_varint(5, req["status"])
        + field_varint(6, req["reply_size"])
    )


def hello_reply(data):
    """HelloReply {message=1, server=2, payload=3, received=4, received_bytes=5}."""
    reply = {"message": "", "server": "", "payload": 0, "received": 0, "received_bytes": 0}
    names = {1: "message", 2: "server", 4: "received", 5: "received_bytes"}
    for number, value in fields(data):
        if number in (1, 2):
            reply[names[number]] = value.decode()
        elif number == 3:
            reply["payload"] = len(value)
        elif number in names:
            reply[names[number]] = value
    return reply


def health_request(service):
    return field_bytes(1, service.encode())


def health_reply(data):
    status = 0
    for number, value in fields(data):
        if number == 1:
            status = value
    return {"status": SERVING_STATUS.get(status, str(status))}


def channel(args):
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]
    if args.ca is None:
        return grpc.insecure_channel(args.target, options=options)
    with open(args.ca, "rb") as f:
        roots = f.read()
    key = chain = None
    if args.cert:
        with open(args.key, "rb") as f:
            key = f.read()
        with open(args.cert, "rb") as f:
            chain = f.read()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=chain
    )
    if args.server_name:
        options += [
            ("grpc.ssl_target_name_override", args.server_name),
            ("grpc.default_authority", args.server_name),
        ]
    return grpc.secure_channel(args.target, credentials, options=options)


def requests(args, n):
    for i in range(n):
        yield {
            "name": args.name if n == 1 else f"{args.name} {i + 1}",
            "count": args.count,
            "payload": b"p" * args.payload_size,
            "delay_ms": args.delay_ms,
            "status": args.status,
            "reply_size": args.reply_size,
        }


def call(args, ch, replies):
    """Runs the call, appending each decoded reply to `replies`; a dict of extras."""
    timeout = args.timeout
    ser, de = hello_request, hello_reply
    if args.call == "unary":
        method = ch.unary_unary(SERVICE + "SayHello", request_serializer=ser, response_deserializer=de)
        replies.append(method(next(requests(args, 1)), timeout=timeout))
    elif args.call == "server_stream":
        method = ch.unary_stream(
            SERVICE + "StreamHellos", request_serializer=ser, response_deserializer=de
        )
        for reply in method(next(requests(args, 1)), timeout=timeout):
            replies.append(reply)
    elif args.call == "client_stream":
        method = ch.stream_unary(
            SERVICE + "CollectHellos", request_serializer=ser, response_deserializer=de
        )
        replies.append(method(requests(args, args.count), timeout=timeout))
    elif args.call == "bidi":
        method = ch.stream_stream(SERVICE + "Chat", request_serializer=ser, response_deserializer=de)
        for reply in method(requests(args, args.count), timeout=timeout):
            replies.append(reply)
    else:
        method = ch.unary_unary(
            HEALTH_CHECK, request_serializer=health_request, response_deserializer=health_reply
        )
        return method(args.service, timeout=timeout)
    return {}


def text(value):
    return value.decode("latin-1") if isinstance(value, bytes) else value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT")
    parser.add_argument("--ca", help="CA certificates (PEM) to verify the server with; none: h2c")
    parser.add_argument("--server-name", help="the name to verify and send (SNI, :authority)")
    parser.add_argument("--cert", help="a client certificate chain (PEM), with --key")
    parser.add_argument("--key", help="the client certificate's key (PEM)")
    parser.add_argument("call", choices=["unary", "server_stream", "client_stream", "bidi", "health"])
    parser.add_argument("--name", default="python")
    parser.add_argument("--count", type=int, default=1, help="replies (server_stream), requests (client_stream, bidi)")
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--status", type=int, default=0, help="nonzero: ask for this status")
    parser.add_argument("--timeout", type=float, help="the call's deadline, seconds")
    parser.add_argument("--payload-size", type=int, default=0, help="payload bytes of each request")
    parser.add_argument("--reply-size", type=int, default=0, help="payload bytes of each reply")
    parser.add_argument("--service", default="", help="health: the service to check")
    args = parser.parse_args()
    if (args.cert is None) != (args.key is None) or (args.cert and not args.ca):
        parser.error("--cert and --key go together, with --ca")

    replies = []
    with channel(args) as ch:
        try:
            extra = call(args, ch, replies)
            result = {"ok": True}
        except grpc.RpcError as e:
            extra = {}
            result = {
                "ok": False,
                "code": e.code().name,
                "details": e.details(),
                "trailers": {k: text(v) for k, v in (e.trailing_metadata() or ())},
            }
    result.update(extra)
    result["messages"] = [r["message"] for r in replies]
    result["servers"] = [r["server"] for r in replies]
    result["received"] = [r["received"] for r in replies]
    result["received_bytes"] = [r["received_bytes"] for r in replies]
    result["payload_sizes"] = [r["payload"] for r in replies]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
