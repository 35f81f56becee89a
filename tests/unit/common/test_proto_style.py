"""The contracts in buf's style: own request and response per RPC, `_UNSPECIFIED` zeros, comments.

Every message, field, oneof, enum, enum value, service and RPC needs a leading comment. protoc
compiles the protos with their source info, which keeps each element's comments under the path
that locates the element in the descriptors.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[3]
PROTOS = ROOT / "protos"
WELL_KNOWN = Path(grpc_tools.__file__).parent / "_proto"

File = descriptor_pb2.FileDescriptorProto
Message = descriptor_pb2.DescriptorProto
Enum = descriptor_pb2.EnumDescriptorProto
Service = descriptor_pb2.ServiceDescriptorProto


def describe(protos: Path, out: Path) -> list[File]:
    """Every .proto under `protos`, compiled with its comments kept."""
    names = sorted(path.relative_to(protos).as_posix() for path in protos.rglob("*.proto"))
    target = out / "descriptors.pb"
    args = [
        "protoc",
        f"-I{protos}",
        f"-I{WELL_KNOWN}",
        "--include_source_info",
        f"--descriptor_set_out={target}",
        *names,
    ]
    assert protoc.main(args) == 0, f"protoc failed on {names}"
    return list(descriptor_pb2.FileDescriptorSet.FromString(target.read_bytes()).file)


@dataclass(frozen=True)
class Element:
    """One element that needs a comment, and the path that locates it in its file."""

    kind: str
    name: str
    path: tuple[int, ...]


def message_elements(message: Message, path: tuple[int, ...], prefix: str) -> Iterator[Element]:
    name = f"{prefix}{message.name}"
    yield Element("message", name, path)
    for i, field in enumerate(message.field):
        yield Element("field", f"{name}.{field.name}", (*path, Message.FIELD_FIELD_NUMBER, i))
    synthetic = {f.oneof_index for f in message.field if f.proto3_optional}
    for i, oneof in enumerate(message.oneof_decl):
        if i not in synthetic:  # `optional` makes these; nobody writes them
            yield Element(
                "oneof", f"{name}.{oneof.name}", (*path, Message.ONEOF_DECL_FIELD_NUMBER, i)
            )
    for i, enum in enumerate(message.enum_type):
        yield from enum_elements(enum, (*path, Message.ENUM_TYPE_FIELD_NUMBER, i), f"{name}.")
    for i, nested in enumerate(message.nested_type):
        if not nested.options.map_entry:  # a map<k, v> field's generated entry type
            yield from message_elements(
                nested, (*path, Message.NESTED_TYPE_FIELD_NUMBER, i), f"{name}."
            )


def enum_elements(enum: Enum, path: tuple[int, ...], prefix: str) -> Iterator[Element]:
    yield Element("enum", f"{prefix}{enum.name}", path)
    for i, value in enumerate(enum.value):
        yield Element("enum value", value.name, (*path, Enum.VALUE_FIELD_NUMBER, i))


def service_elements(service: Service, path: tuple[int, ...]) -> Iterator[Element]:
    yield Element("service", service.name, path)
    for i, method in enumerate(service.method):
        yield Element(
            "rpc", f"{service.name}.{method.name}", (*path, Service.METHOD_FIELD_NUMBER, i)
        )


def elements(file: File) -> Iterator[Element]:
    for i, message in enumerate(file.message_type):
        yield from message_elements(message, (File.MESSAGE_TYPE_FIELD_NUMBER, i), "")
    for i, enum in enumerate(file.enum_type):
        yield from enum_elements(enum, (File.ENUM_TYPE_FIELD_NUMBER, i), "")
    for i, service in enumerate(file.service):
        yield from service_elements(service, (File.SERVICE_FIELD_NUMBER, i))


def missing_comments(file: File) -> list[str]:
    """Elements of `file` with no leading comment (a trailing one does not count)."""
    comments = {
        tuple(location.path): location.leading_comments.strip()
        for location in file.source_code_info.location
    }
    return [
        f"{file.name}: {element.kind} {element.name} has no leading comment"
        for element in elements(file)
        if not comments.get(element.path)
    ]


def all_enums(file: File) -> Iterator[Enum]:
    yield from file.enum_type
    messages = list(file.message_type)
    while messages:
        message = messages.pop()
        yield from message.enum_type
        messages.extend(message.nested_type)


def upper_snake(name: str) -> str:
    """`LifecycleEventType` → `LIFECYCLE_EVENT_TYPE`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def bad_zero_values(file: File) -> list[str]:
    problems = []
    for enum in all_enums(file):
        wanted = f"{upper_snake(enum.name)}_UNSPECIFIED"
        zero = enum.value[0]
        if zero.name != wanted or zero.number != 0:
            problems.append(
                f"{file.name}: enum {enum.name} starts with {zero.name} = {zero.number}"
            )
    return problems


def bad_rpc_messages(files: list[File]) -> list[str]:
    """RPCs whose request or response is not their own `<Rpc>Request` / `<Rpc>Response`."""
    problems = []
    uses: Counter[str] = Counter()
    for file in files:
        for service in file.service:
            for method in service.method:
                rpc = f"{service.name}.{method.name}"
                for used, suffix in (
                    (method.input_type, "Request"),
                    (method.output_type, "Response"),
                ):
                    uses[used] += 1
                    if used != f".{file.package}.{method.name}{suffix}":
                        problems.append(f"{file.name}: rpc {rpc} uses {used}")
    problems += [f"{name} serves {count} RPCs" for name, count in uses.items() if count > 1]
    return problems


def style_problems(files: list[File]) -> list[str]:
    problems = bad_rpc_messages(files)
    for file in files:
        problems += missing_comments(file) + bad_zero_values(file)
    return problems


def test_the_contracts_follow_the_style(tmp_path: Path) -> None:
    files = describe(PROTOS, tmp_path)
    assert sorted(f.name for f in files) == [
        "kairos/dispatch/v1/dispatch.proto",
        "kairos/dispatch/v1/webhooks.proto",
        "kairos/events/v1/events.proto",
        "kairos/posts/v1/events.proto",
        "kairos/posts/v1/media.proto",
        "kairos/posts/v1/posts.proto",
        "kairos/posts/v1/queues.proto",
        "kairos/posts/v1/series.proto",
        "kairos/posts/v1/webhooks.proto",
    ]
    # The walk reaches every kind of element, so an empty answer means something.
    kinds = Counter(element.kind for file in files for element in elements(file))
    assert {"message", "field", "enum", "enum value", "service", "rpc"} <= set(kinds)
    assert style_problems(files) == []


GOOD = """syntax = "proto3";

// A probe package.
package probe.v1;

// How a probe went.
enum ProbeState {
  // Not set.
  PROBE_STATE_UNSPECIFIED = 0;
  // It answered.
  PROBE_STATE_UP = 1;
}

// Sends probes.
service ProbeService {
  // Sends one probe.
  rpc SendProbe(SendProbeRequest) returns (SendProbeResponse);
  // Sends one probe again.
  rpc ResendProbe(ResendProbeRequest) returns (ResendProbeResponse);
}

// What to probe.
message SendProbeRequest {
  // The target.
  string target = 1;
  // Its labels.
  map<string, string> labels = 2;
  // When given, how long to wait.
  optional int32 timeout = 3;
  // How to reach it.
  oneof via {
    // By name.
    string host = 4;
    // By address.
    string ip = 5;
  }
}

// How it went.
message SendProbeResponse {
  // The state.
  ProbeState state = 1;
}

// What to probe again.
message ResendProbeRequest {
  // The target.
  string target = 1;
}

// How it went again.
message ResendProbeResponse {
  // The state.
  ProbeState state = 1;
}
"""

DOCTORED = {
    "message": ("// What to probe.\n", "", "message SendProbeRequest has no leading comment"),
    "field": ("  // Its labels.\n", "", "field SendProbeRequest.labels has no leading comment"),
    "oneof": ("  // How to reach it.\n", "", "oneof SendProbeRequest.via has no leading comment"),
    "enum value": ("  // It answered.\n", "", "enum value PROBE_STATE_UP has no leading comment"),
    "rpc": (
        "  // Sends one probe again.\n",
        "",
        "rpc ProbeService.ResendProbe has no leading comment",
    ),
    "trailing only": (
        "    // By name.\n    string host = 4;\n",
        "    string host = 4;  // By name.\n",
        "field SendProbeRequest.host has no leading comment",
    ),
    "zero value": (
        "PROBE_STATE_UNSPECIFIED",
        "PROBE_STATE_UNKNOWN",
        "starts with PROBE_STATE_UNKNOWN",
    ),
    "shared request": (
        "rpc ResendProbe(ResendProbeRequest)",
        "rpc ResendProbe(SendProbeRequest)",
        "rpc ProbeService.ResendProbe uses .probe.v1.SendProbeRequest",
    ),
}


def check_probe(tmp_path: Path, text: str) -> list[str]:
    protos = tmp_path / "protos"
    (protos / "probe" / "v1").mkdir(parents=True)
    (protos / "probe" / "v1" / "probe.proto").write_text(text)
    return style_problems(describe(protos, tmp_path))


def test_a_probe_in_the_style_passes(tmp_path: Path) -> None:
    assert check_probe(tmp_path, GOOD) == []


@pytest.mark.parametrize("case", DOCTORED)
def test_each_break_of_the_style_is_found(tmp_path: Path, case: str) -> None:
    old, new, problem = DOCTORED[case]
    assert old in GOOD
    problems = check_probe(tmp_path, GOOD.replace(old, new, 1))
    assert len(problems) >= 1
    assert any(problem in p for p in problems), problems
