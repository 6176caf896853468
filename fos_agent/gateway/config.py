"""The gateway's TOML: one ``[[stage]]`` per agent, each with its ``[stage.machine]`` mapping.

Errors are one line naming the TOML key and, where it can be found, its line, because the
person reading them edits a file, not Python.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECURITY_POLICIES = ("None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")
SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")
_NODE_ID = re.compile(r"^(ns=\d+;)?[isgb]=.+$")
# asyncua browse path: "0:Objects/2:Machine/2:Done" (namespace-qualified names)
_BROWSE = re.compile(r"^(\d+:[^/]+)(/\d+:[^/]+)*$")
START_SOURCES = ("job", "input_ids", "const")


class ConfigError(ValueError):
    """A one-line message naming the TOML key (and line) that is wrong."""


@dataclass(frozen=True)
class NodeRef:
    """A variable or method on the server: a NodeId string or a browse path."""

    key: str          # the TOML key (and line) it came from, for error messages
    node_id: str | None = None
    browse_path: str | None = None


@dataclass(frozen=True)
class Write:
    node: NodeRef
    source: str       # "job" | "input_ids" | "const"
    value: Any = None


@dataclass(frozen=True)
class MachineMapping:
    endpoint: str
    security_policy: str = "None"
    security_mode: str = "None"
    certificate: str | None = None
    private_key: str | None = None
    server_certificate: str | None = None
    user: str | None = None
    password: str | None = None
    start_writes: tuple[Write, ...] = ()
    start_method: NodeRef | None = None
    start_method_object: NodeRef | None = None
    done: NodeRef | None = None
    done_value: Any = True
    ok: NodeRef | None = None
    ok_value: Any = True
    serial: NodeRef | None = None
    job_number: NodeRef | None = None
    timeout_s: float = 30.0
    status_flow_state: NodeRef | None = None
    status_next_supplier: NodeRef | None = None
    status_output_batch: NodeRef | None = None


@dataclass(frozen=True)
class GatewayConfig:
    node_id: str
    produces_item: str
    produces_qty: int
    requires: tuple[tuple[str, int], ...]
    listen: str
    coordinators: tuple[str, ...]
    data_dir: str
    machine: MachineMapping
    tls: dict[str, str] = field(default_factory=dict)


class _Ctx:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.label(key)}: {msg}")

    def label(self, key: str) -> str:
        line = self.line_of(key)
        return f"{key} (line {line})" if line else key

    def line_of(self, key: str) -> int | None:
        """The line of ``key`` ("stage[1].machine.done.node"): walk the table headers it
        passes through, then find its leaf after the last one found."""
        parts = key.split(".")
        pos, table = 0, ""
        for part in parts[:-1]:
            name, _, idx = part.partition("[")
            table = f"{table}.{name}" if table else name
            header = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*$")
            hits = [i for i in range(pos, len(self.lines)) if header.match(self.lines[i])]
            n = int(idx.rstrip("]")) if idx and self.lines and hits and \
                self.lines[hits[0]].lstrip().startswith("[[") else 0
            if len(hits) > n:
                pos = hits[n] + 1
        leaf = re.escape(parts[-1].split("[", 1)[0])
        pat = re.compile(rf"(^\s*|[{{,]\s*){leaf}\s*=")
        return next((i + 1 for i in range(pos, len(self.lines)) if pat.search(self.lines[i])),
                    None)


def _get(ctx: _Ctx, tbl: dict[str, Any], key: str, prefix: str, typ: type | tuple[type, ...],
         default: Any = ..., ) -> Any:
    full = f"{prefix}.{key}" if prefix else key
    if key not in tbl:
        if default is ...:
            raise ctx.fail(full, "missing")
        return default
    val = tbl[key]
    if not isinstance(val, typ) or (isinstance(val, bool) and bool not in _tuple(typ)):
        names = "/".join(t.__name__ for t in _tuple(typ))
        raise ctx.fail(full, f"expected {names}, got {type(val).__name__} {val!r}")
    return val


def _tuple(typ: type | tuple[type, ...]) -> tuple[type, ...]:
    return typ if isinstance(typ, tuple) else (typ,)


def _ref(ctx: _Ctx, tbl: dict[str, Any], key: str, prefix: str,
         required: bool = False) -> NodeRef | None:
    full = f"{prefix}.{key}"
    raw = _get(ctx, tbl, key, prefix, str, ... if required else None)
    if raw is None:
        return None
    if _NODE_ID.match(raw):
        return NodeRef(ctx.label(full), node_id=raw)
    if _BROWSE.match(raw):
        return NodeRef(ctx.label(full), browse_path=raw)
    raise ctx.fail(full, f"{raw!r} is neither a NodeId (ns=2;s=Name, i=85) "
                         "nor a browse path (0:Objects/2:Machine)")


def _choice(ctx: _Ctx, val: str, full: str, allowed: tuple[str, ...]) -> str:
    if val not in allowed:
        raise ctx.fail(full, f"{val!r} is not one of {', '.join(allowed)}")
    return val


def _machine(ctx: _Ctx, m: dict[str, Any], p: str) -> MachineMapping:
    endpoint = _get(ctx, m, "endpoint", p, str)
    if not endpoint.startswith("opc.tcp://"):
        raise ctx.fail(f"{p}.endpoint", f"{endpoint!r} does not start with opc.tcp://")
    policy = _choice(ctx, _get(ctx, m, "security_policy", p, str, "None"),
                     f"{p}.security_policy", SECURITY_POLICIES)
    mode = _choice(ctx, _get(ctx, m, "security_mode", p, str,
                             "None" if policy == "None" else "SignAndEncrypt"),
                   f"{p}.security_mode", SECURITY_MODES)
    cert = _get(ctx, m, "certificate", p, str, None)
    key = _get(ctx, m, "private_key", p, str, None)
    if policy != "None" and not (cert and key):
        raise ctx.fail(f"{p}.security_policy",
                       f"{policy} needs certificate and private_key")
    user = _get(ctx, m, "user", p, str, None)
    password = _get(ctx, m, "password", p, str, None)
    if (user is None) != (password is None):
        raise ctx.fail(f"{p}.user", "user and password go together")
    start = _get(ctx, m, "start", p, dict, {})
    sp = f"{p}.start"
    writes = []
    for i, w in enumerate(_get(ctx, start, "write", sp, list, [])):
        wp = f"{sp}.write[{i}]"
        if not isinstance(w, dict):
            raise ctx.fail(wp, "expected a table {node = ..., value = ...}")
        ref = _ref(ctx, w, "node", wp, required=True)
        assert ref is not None
        source = _choice(ctx, _get(ctx, w, "value", wp, str), f"{wp}.value",
                         START_SOURCES) if "const" not in w else "const"
        writes.append(Write(ref, source, w.get("const")))
    method = _ref(ctx, start, "method", sp)
    method_obj = _ref(ctx, start, "object", sp)
    if method is not None and method_obj is None:
        raise ctx.fail(f"{sp}.method", "a method call needs start.object (its parent)")
    if not writes and method is None:
        raise ctx.fail(sp, "needs write entries and/or a method")
    done_tbl = _get(ctx, m, "done", p, dict)
    dp = f"{p}.done"
    timeout = float(_get(ctx, m, "timeout_s", p, (int, float), 30.0))
    if timeout <= 0:
        raise ctx.fail(f"{p}.timeout_s", "must be > 0")
    status = _get(ctx, m, "status", p, dict, {})
    stp = f"{p}.status"
    return MachineMapping(
        endpoint=endpoint, security_policy=policy, security_mode=mode, certificate=cert,
        private_key=key, server_certificate=_get(ctx, m, "server_certificate", p, str, None),
        user=user, password=password, start_writes=tuple(writes), start_method=method,
        start_method_object=method_obj, done=_ref(ctx, done_tbl, "node", dp, required=True),
        done_value=_get(ctx, done_tbl, "value", dp, (bool, int, str), True),
        ok=_ref(ctx, done_tbl, "ok", dp),
        ok_value=_get(ctx, done_tbl, "ok_value", dp, (bool, int, str), True),
        serial=_ref(ctx, done_tbl, "serial", dp), job_number=_ref(ctx, done_tbl, "job", dp),
        timeout_s=timeout, status_flow_state=_ref(ctx, status, "flow_state", stp),
        status_next_supplier=_ref(ctx, status, "next_supplier", stp),
        status_output_batch=_ref(ctx, status, "output_batch", stp))


def _item(ctx: _Ctx, val: Any, full: str) -> tuple[str, int]:
    if (not isinstance(val, dict) or not isinstance(val.get("item"), str)
            or not isinstance(val.get("qty", 1), int) or isinstance(val.get("qty", 1), bool)):
        raise ctx.fail(full, "expected {item = \"name\", qty = N}")
    qty = int(val.get("qty", 1))
    if qty < 1:
        raise ctx.fail(full, "qty must be >= 1")
    return str(val["item"]), qty


def parse_config(text: str) -> list[GatewayConfig]:
    """All stages in ``text``; raises ConfigError (one line, key and line)."""
    ctx = _Ctx(text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"TOML: {e}") from None
    stages = doc.get("stage")
    if not isinstance(stages, list) or not stages:
        raise ctx.fail("stage", "no [[stage]] table")
    out = []
    for i, s in enumerate(stages):
        p = f"stage[{i}]"
        node_id = _get(ctx, s, "id", p, str)
        prod = _item(ctx, _get(ctx, s, "produces", p, dict), f"{p}.produces")
        reqs = tuple(_item(ctx, r, f"{p}.requires[{j}]")
                     for j, r in enumerate(_get(ctx, s, "requires", p, list, [])))
        coords = _get(ctx, s, "coordinators", p, list)
        if not coords or not all(isinstance(c, str) for c in coords):
            raise ctx.fail(f"{p}.coordinators", "expected a non-empty list of host:port")
        tls = _get(ctx, s, "tls", p, dict, {})
        for k in ("cert", "key", "ca"):
            if k in tls and not isinstance(tls[k], str):
                raise ctx.fail(f"{p}.tls.{k}", "expected a file path string")
        out.append(GatewayConfig(
            node_id=node_id, produces_item=prod[0], produces_qty=prod[1], requires=reqs,
            listen=_get(ctx, s, "listen", p, str, "127.0.0.1:0"), coordinators=tuple(coords),
            data_dir=_get(ctx, s, "data_dir", p, str),
            machine=_machine(ctx, _get(ctx, s, "machine", p, dict), f"{p}.machine"),
            tls={k: str(v) for k, v in tls.items()}))
    ids = [c.node_id for c in out]
    if len(set(ids)) != len(ids):
        raise ctx.fail("stage.id", "two stages share an id")
    return out


def load_config(path: str | Path) -> list[GatewayConfig]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    return parse_config(text)
