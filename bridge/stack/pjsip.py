"""The trunks and transports of pjsip.conf, rendered from a `TrunkPlan` and the settings.

dialplan/pjsip.conf keeps what never varies: the `[trunk-defaults]` template
that holds the masking guarantees (no Remote-Party-ID, no Diversion, no
connected-line updates, media through Asterisk). Every trunk here inherits it
and adds only what differs per carrier; nothing rendered here can turn a
guarantee off. Pure: text out, the instance writes it.
"""
from __future__ import annotations

from bridge.config import Settings
from bridge.stack.trunks import InboundTrunk, Media, OutboundTrunk, TrunkPlan

# Where the TLS files are copied, below the instance's etc/: a chrooted
# Asterisk sees nothing outside its root.
TLS_DIR = "keys"
TLS_FILES = {"cert": "tls.crt", "key": "tls.key", "ca": "tls-ca.crt"}


def nat_options(settings: Settings) -> str:
    """A transport's lines for a NAT: the public addresses carriers see, and
    the networks (`local_net`) reached directly, to which private addresses go."""
    ast = settings.asterisk
    lines = [f"local_net = {net}" for net in settings.local_networks]
    if ast.external_signaling_address:
        lines.append(f"external_signaling_address = {ast.external_signaling_address}")
    if ast.external_media_address:
        lines.append(f"external_media_address = {ast.external_media_address}")
    return "\n".join(lines)


def tls_transport(settings: Settings, etc_dir: str) -> str:
    """The TLS transport, when `MASKING_SIP_TLS_PORT` asks for one."""
    ast = settings.asterisk
    if not ast.sip_tls_port:
        return "; no TLS transport (MASKING_SIP_TLS_PORT=0)"
    keys = f"{etc_dir}/{TLS_DIR}"
    lines = ["[transport-tls]", "type = transport", "protocol = tls", f"bind = {ast.sip_host}:{ast.sip_tls_port}",
             f"cert_file = {keys}/{TLS_FILES['cert']}", f"priv_key_file = {keys}/{TLS_FILES['key']}",
             # Without it the pjproject here refused TLS 1.2 and 1.3 clients
             # alike (measured); 1.2 is what carriers speak.
             "method = tlsv1_2", "verify_client = no"]
    if str(ast.tls_ca_file) not in ("", "."):
        lines += [f"ca_list_file = {keys}/{TLS_FILES['ca']}", "verify_server = yes"]
    else:
        lines.append("verify_server = no")
    nat = nat_options(settings)
    return "\n".join(lines) + ("\n" + nat if nat else "")


def trunks(plan: TrunkPlan) -> str:
    """Every trunk's sections, inbound first."""
    return "\n\n".join([*(_inbound(t) for t in plan.inbound), *(_outbound(t) for t in plan.outbound)])


def _inbound(trunk: InboundTrunk) -> str:
    endpoint = [f"[{trunk.name}](trunk-defaults)", "context = masking-inbound", f"transport = transport-{trunk.transport}",
                "send_pai = no", *_media(trunk.media)]
    identify = [f"[{trunk.name}]", "type = identify", f"endpoint = {trunk.name}",
                *(f"match = {address}" for address in trunk.match)]
    return "\n".join([f"; inbound carrier {trunk.name}", *endpoint, "", *identify])


def _outbound(trunk: OutboundTrunk) -> str:
    auth = f"{trunk.name}-auth"
    endpoint = [f"[{trunk.name}](trunk-defaults)", "context = masking-outbound-unused", f"aors = {trunk.name}",
                f"transport = transport-{trunk.transport}", f"send_pai = {_yes(trunk.pai)}",
                f"from_domain = {trunk.from_domain}"]
    if trunk.from_user:
        endpoint.append(f"from_user = {trunk.from_user}")
    if trunk.privacy == "id":
        # Restricted presentation (set on each leg by the bridge, see
        # trunks.outbound_presentation): chan_pjsip then sends From anonymous
        # and "Privacy: id", and (trusted) still the virtual number in PAI.
        endpoint += ["trust_id_outbound = yes"]
    if trunk.authenticates:
        endpoint.append(f"outbound_auth = {auth}")
    endpoint += _media(trunk.media)
    sections = [f"; outbound trunk {trunk.name}", *endpoint, "",
                f"[{trunk.name}]", "type = aor", f"contact = {_uri(trunk.host, trunk.port, trunk.transport)}",
                "qualify_frequency = 0"]
    if trunk.authenticates:
        sections += ["", f"[{auth}]", "type = auth", "auth_type = userpass", f"username = {trunk.username}",
                     f"password = {trunk.password}"]
        if trunk.realm:
            sections.append(f"realm = {trunk.realm}")
    if trunk.register:
        registrar_host, _, registrar_port = (trunk.registrar or f"{trunk.host}:{trunk.port}").partition(":")
        server = _uri(registrar_host, int(registrar_port or 5060), trunk.transport)
        sections += ["", f"[{trunk.name}]", "type = registration", f"transport = transport-{trunk.transport}",
                     f"outbound_auth = {auth}", f"server_uri = {server}",
                     f"client_uri = sip:{trunk.username}@{trunk.from_domain or registrar_host}",
                     f"contact_user = {trunk.username}", f"expiration = {trunk.register_expiry}",
                     f"retry_interval = {trunk.register_retry}",
                     # A refused password is retried too: the carrier may fix
                     # its side without anyone restarting Asterisk.
                     f"forbidden_retry_interval = {trunk.register_retry}",
                     f"fatal_retry_interval = {trunk.register_retry}", "max_retries = 100000",
                     "auth_rejection_permanent = no"]
    return "\n".join(sections)


def _media(media: Media) -> list[str]:
    lines = ["disallow = all", f"allow = {','.join(media.codecs)}", f"dtmf_mode = {media.dtmf_mode}",
             f"rtp_timeout = {media.rtp_timeout}", f"rtp_timeout_hold = {media.rtp_timeout_hold}",
             f"timers = {media.session_timers}", f"timers_sess_expires = {media.session_expires}"]
    if media.srtp != "no":
        lines += ["media_encryption = sdes", f"media_encryption_optimistic = {_yes(media.srtp == 'optional')}"]
    return lines


def _uri(host: str, port: int, transport: str) -> str:
    return f"sip:{host}:{port}" + (";transport=tls" if transport == "tls" else "")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
