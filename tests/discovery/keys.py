"""SSH keys for tests that need a key file but no SSH server, made in Python (the `cryptography`
library paramiko already needs), so they run where openssh-client is not installed."""

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_ed25519_key(path: Path) -> Path:
    """A new key in OpenSSH's format at `path` (mode 0600) and its public half at `path`.pub, as
    `ssh-keygen -t ed25519 -N "" -f path` writes them."""
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    Path(f"{path}.pub").write_bytes(public + b"\n")
    return path
