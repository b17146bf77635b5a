"""TLS for every NATS connection: the CA and certificates ``antq auth generate`` writes, and the client side.

``generate_tls`` writes, under ``<credentials dir>/tls``: a CA (``ca.pem``, its key ``ca-key.pem``), one server
certificate for every NATS node (``server.pem``, ``server-key.pem``; names ``nats-1``, ``nats-2``, ``nats-3``,
``localhost``, ``127.0.0.1`` and the operator's ``--host`` names; usable for client connections and for the
cluster's routes, which present it to each other) and, on request, client certificates
(``client-<name>.pem``, ``client-<name>-key.pem``) for servers that verify their clients. Keys are EC P-256,
written mode 0600 from the start; certificates are public (0644). Files already there are kept: the CA for
ever (a new CA would orphan every certificate it signed), the server certificate unless a name it needs is
missing from it or it expires within 30 days, then it is issued again by the same CA.

A process connects over TLS when ``ANTQ_NATS_TLS_CA`` names the CA that signed the servers' certificate
(``client_context``); ``ANTQ_NATS_TLS_CERT`` and ``ANTQ_NATS_TLS_KEY`` add its own client certificate. The
operator's own CA and certificates are used the same way: point the three settings (and the nats-server
``tls {}`` blocks) at those files; nothing here needs to have generated them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.errors import InfraError

TLS_DIR = "tls"
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
SERVER_NAMES = ("nats-1", "nats-2", "nats-3", "localhost", "127.0.0.1")
"""The names every server certificate holds: the compose stack's nodes and loopback."""
KEY_MODE = 0o600
CERT_MODE = 0o644
CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_WITHIN = dt.timedelta(days=30)
ORGANIZATION = "ANTQ Ledger"


class TlsError(InfraError):
    """A TLS file that cannot be read or used, or a name that cannot go into a certificate."""


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """Where ``generate_tls`` put the files; ``created``: the file names written now (others were kept)."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]]
    created: tuple[str, ...]


def client_cert_names(name: str) -> tuple[str, str]:
    """The certificate and key file names of the client certificate ``name``."""
    return f"client-{name}.pem", f"client-{name}-key.pem"


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create with ``mode`` from the start (a key is never readable by others, not even for an instant)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or any(c.isspace() or c in "/:@" for c in host):
        raise TlsError(f"--host {host!r} is neither a host name nor an IP address")
    return x509.DNSName(host)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise TlsError(f"cannot read the certificate {path}: {exc}") from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(f"cannot read the private key {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{path}: an EC private key expected (the CA key `antq auth generate` writes)")
    return key


def _new_ca(directory: Path) -> None:
    key = _new_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{ORGANIZATION} NATS CA"))
        .issuer_name(_name(f"{ORGANIZATION} NATS CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(directory / CA_KEY, _key_pem(key), KEY_MODE)
    _write(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)


def _issue(
    directory: Path,
    cert_file: str,
    key_file: str,
    common_name: str,
    hosts: Sequence[str],
    usages: Sequence[x509.ObjectIdentifier],
) -> None:
    ca_cert = _load_cert(directory / CA_CERT)
    ca_key = _load_key(directory / CA_KEY)
    key = _new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_alt_name(h) for h in hosts]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(directory / key_file, _key_pem(key), KEY_MODE)
    _write(directory / cert_file, cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)


def cert_names(path: Path) -> set[str]:
    """The DNS names and IP addresses a certificate holds (as text)."""
    cert = _load_cert(path)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {
        *san.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
    }


def _server_cert_current(directory: Path, hosts: Sequence[str]) -> bool:
    cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = _load_cert(cert_path)
    ca = _load_cert(directory / CA_CERT)
    if cert.issuer != ca.subject or cert.not_valid_after_utc - _now() < RENEW_WITHIN:
        return False
    wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    return wanted <= cert_names(cert_path)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def generate_tls(credentials_dir: Path, hosts: Sequence[str] = (), clients: Sequence[str] = ()) -> TlsFiles:
    """Write (or keep) the CA, the server certificate (``SERVER_NAMES`` plus ``hosts``) and the client
    certificates ``clients`` under ``<credentials_dir>/tls``."""
    for host in hosts:
        _alt_name(host)  # refuse a bad name before writing anything
    for client in clients:
        if not client or not all(c.isalnum() or c in "-_" for c in client):
            raise TlsError(f"client certificate name {client!r}: letters, digits, - and _ only")
    directory = credentials_dir / TLS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    created: list[str] = []
    if not (directory / CA_CERT).exists() or not (directory / CA_KEY).exists():
        _new_ca(directory)
        created += [CA_CERT, CA_KEY]
    names = list(dict.fromkeys([*SERVER_NAMES, *hosts]))
    if not _server_cert_current(directory, names):
        # the nodes present it to clients and to each other on the cluster's routes: both usages
        usages = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
        _issue(directory, SERVER_CERT, SERVER_KEY, "nats-server", names, usages)
        created += [SERVER_CERT, SERVER_KEY]
    client_files: dict[str, tuple[Path, Path]] = {}
    for client in clients:
        cert_file, key_file = client_cert_names(client)
        if not ((directory / cert_file).exists() and (directory / key_file).exists()):
            _issue(directory, cert_file, key_file, client, (), (ExtendedKeyUsageOID.CLIENT_AUTH,))
            created += [cert_file, key_file]
        client_files[client] = (directory / cert_file, directory / key_file)
    return TlsFiles(
        directory=directory,
        ca_cert=directory / CA_CERT,
        ca_key=directory / CA_KEY,
        server_cert=directory / SERVER_CERT,
        server_key=directory / SERVER_KEY,
        clients=client_files,
        created=tuple(created),
    )


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """The ``tls=`` of ``nats.connect``: servers verified against ``ca`` (None: the system's CAs), the host
    name checked, TLS 1.2 at least; with ``cert`` and ``key``, this client's certificate too."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None:
            context.load_cert_chain(str(cert), str(key) if key is not None else None)
    except FileNotFoundError as exc:
        raise TlsError(f"TLS file not found: {exc.filename}") from None
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use the TLS files (CA {ca}, certificate {cert}, key {key}): {exc}") from None
    return context


def server_tls_block(files: TlsFiles, *, verify: bool = False, indent: str = "") -> str:
    """A nats-server ``tls {}`` block with these files (for ``cluster {}`` too: put it inside); ``verify``:
    clients must present a certificate of the CA."""
    lines = [
        "tls {",
        f'  ca_file: "{files.ca_cert}"',
        f'  cert_file: "{files.server_cert}"',
        f'  key_file: "{files.server_key}"',
        *(["  verify: true"] if verify else []),
        "}",
    ]
    return "".join(f"{indent}{line}\n" for line in lines)
