"""A gRPC client that knows nothing of Cantina but its address.

It discovers the API through server reflection (grpcio-reflection speaks the
v1alpha protocol, as older grpcurl, evans and Postman do), builds the message
classes from the descriptors it receives, and calls CommandService.Dispatch.
It prints a JSON report for the Rust test to check.

usage: reflect_dispatch.py HOST:PORT TOKEN
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    address, token = sys.argv[1], sys.argv[2]
    channel = grpc.insecure_channel(address)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName("cantina.v1.CommandService")
    method = service.FindMethodByName("Dispatch")
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        f"/{service.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    auth = [("authorization", f"Bearer {token}")]

    report = {
        "services": services,
        "methods": [m.name for m in service.methods],
        "dispatch": json_format.MessageToDict(
            call(request_class(line="engage"), metadata=auth, timeout=10)
        ),
    }
    try:
        call(request_class(line="engag"), metadata=auth, timeout=10)
        report["error"] = None
    except grpc.RpcError as error:
        report["error"] = {"code": error.code().name, "details": error.details()}
    try:
        call(request_class(line="status"), timeout=10)
        report["unauthenticated"] = None
    except grpc.RpcError as error:
        report["unauthenticated"] = error.code().name
    print(json.dumps(report))


if __name__ == "__main__":
    main()
