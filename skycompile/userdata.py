"""Where the scripts go as user data: the output formats, and each cloud's size budget.

Formats (`Packaging`): the node script as it is (`script`), or a cloud-init MIME
multipart message (`cloud-init`) whose `text/x-shellscript` part is the node script (up,
once per instance) and whose `text/x-shellscript-per-boot` part runs `remount` at every
later boot. Either may be gzip-compressed (cloud-init unpacks gzip user
data) and then base64-encoded (for APIs and tools that want text, or platforms that damage
binary user data; one line). Every form is byte-stable: golden checks compare them.

Budgets (`TARGETS`) are the largest user data each platform accepts, in bytes of the data
as the user hands it over, before the base64 encoding its API wants:
- aws: "User data is limited to 16 KB, in raw form, before it is base64-encoded" (EC2
  User Guide, instance user data).
- gcp: a metadata value (`user-data`) is at most 256 KB (Compute Engine, VM metadata).
- azure: custom data is decoded to "a binary array [whose] maximum length is 65535 bytes"
  (Compute API, OSProfile.customData).
- openstack: "The provided user data must be base64 encoded and is restricted to 65535
  bytes" (Nova, user data): 65,535 characters of base64 carry 49,149 bytes.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
from dataclasses import dataclass

TARGETS: dict[str, int] = {
    "aws": 16 * 1024,
    "gcp": 256 * 1024,
    "azure": 65535,
    "openstack": 65535 // 4 * 3,
}
# A GCE metadata value is text, and cloud-init reads it as it is (base64 only with a second
# key, user-data-encoding): neither gzip nor base64 output can go there.
TEXT_ONLY = frozenset({"gcp"})
FORMATS = ("script", "cloud-init")


@dataclass(frozen=True)
class Packaging:
    format: str = "script"  # one of FORMATS
    gzip: bool = False
    base64: bool = False

    def suffix(self) -> str:
        """The file name ending of one node's output: node-0.sh, node-0.user-data.gz, ..."""
        return ((".sh" if self.format == "script" else ".user-data")
                + (".gz" if self.gzip else "") + (".b64" if self.base64 else ""))

    def flags(self) -> str:
        """The command-line flags that ask for this packaging ("" for the default)."""
        words = [f"--format {self.format}"] if self.format != "script" else []
        return " ".join(words + ["--gzip"] * self.gzip + ["--base64"] * self.base64)


def package(script: str, boot_hook: str | None, name: str, how: Packaging) -> bytes:
    """One node's output. `boot_hook`: the per-boot part (None: the task mounts nothing,
    so the message has only the per-instance part); `name`: the parts' file names start
    with it (cloud-init writes them under those names)."""
    data = script.encode()
    if how.format == "cloud-init":
        # text/x-shellscript runs once per instance with every cloud-init (Amazon Linux 2
        # ships 19.3); the per-boot type needs 22.1 or newer, and an older one skips only
        # that part.
        parts = [("text/x-shellscript", f"{name}.sh", data)]
        if boot_hook is not None:
            parts.append(("text/x-shellscript-per-boot", f"{name}-remount.sh",
                          boot_hook.encode()))
        data = multipart(parts)
    if how.gzip:
        data = gzipped(data)
    if how.base64:
        data = base64.b64encode(data) + b"\n"  # one line: JSON APIs and variables take it
    return data


def payload(output: bytes, how: Packaging) -> bytes:
    """What the platform counts against its budget: the output before base64."""
    return base64.b64decode(output.strip(), validate=True) if how.base64 else output


def multipart(parts: list[tuple[str, str, bytes]]) -> bytes:
    """A MIME multipart/mixed message of (content type, file name, body) parts, as
    cloud-init's make-mime writes them. A body that is ASCII with short lines goes as it is
    (7bit), any other as base64, so that it arrives byte for byte. The boundary is derived
    from the bodies, so it cannot occur in them and the message is the same every time."""
    digest = hashlib.sha256(b"\0".join(body for _, _, body in parts)).hexdigest()[:32]
    boundary = f"==skycompile-{digest}=="
    out = [f'Content-Type: multipart/mixed; boundary="{boundary}"', "MIME-Version: 1.0",
           f"Number-Attachments: {len(parts)}", ""]
    for ctype, name, body in parts:
        plain = body.isascii() and b"\r" not in body and \
            all(len(line) <= 998 for line in body.split(b"\n"))
        text = body.decode() if plain else base64.encodebytes(body).decode()
        out += [f"--{boundary}",
                f'Content-Type: {ctype}; charset="{"us-ascii" if plain else "utf-8"}"',
                "MIME-Version: 1.0",
                f"Content-Transfer-Encoding: {'7bit' if plain else 'base64'}",
                f'Content-Disposition: attachment; filename="{name}"', "",
                # the line break before a boundary belongs to the boundary: keep the body's own
                text]
    out.append(f"--{boundary}--")
    return "\n".join(out).encode() + b"\n"


def gzipped(data: bytes) -> bytes:
    """gzip at the highest level, with no name and a zero time: the same bytes every run."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def sizes(output: bytes, how: Packaging = Packaging()) -> dict:
    """{"bytes", "payload_bytes", "gzip_bytes", "sha256", "targets": {target: {"budget",
    "fits", "fits_gzipped"}}} of one node's output. `fits` compares the payload (the output
    before base64), `fits_gzipped` what --gzip would make of it (for a TEXT_ONLY target,
    which takes no gzip, the same as `fits`)."""
    data = payload(output, how)
    packed = len(data) if how.gzip else len(gzipped(data))
    return {
        "bytes": len(output),
        "payload_bytes": len(data),
        "gzip_bytes": packed,
        "sha256": hashlib.sha256(output).hexdigest(),
        "targets": {name: {"budget": budget, "fits": len(data) <= budget,
                           "fits_gzipped": (len(data) if name in TEXT_ONLY else packed) <= budget}
                    for name, budget in TARGETS.items()},
    }
