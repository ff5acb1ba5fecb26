"""``radiomicslab web``: RadiomicsLab in the browser (trame-slicer), served on this workstation."""

import ipaddress
import socket
from pathlib import Path

import click


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_listen_address(host: str, port: int) -> list:
    """The socket addresses ``host:port`` stands for; a one-line error (exit status 2) if it names none."""
    from RadiomicsLabLib.errors import RadiomicsLabError

    try:
        return socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise RadiomicsLabError(f"--host {host}: no such address ({reason}); give an address of this machine, "
                                "e.g. 127.0.0.1.") from None


def check_bindable(host: str, port: int, addresses: list, any_port: bool = False):
    """Bind each of ``addresses`` (from :func:`resolve_listen_address`) now, before the slow app build:
    a one-line error (exit status 2) for an address that is not this machine's or a port taken.
    ``any_port``: check the address only (bind port 0)."""
    from RadiomicsLabLib.errors import RadiomicsLabError

    for family, kind, protocol, _, address in addresses:
        if any_port:
            address = (address[0], 0, *address[2:])
        try:
            with socket.socket(family, kind, protocol) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket
                probe.bind(address)
        except OSError as error:
            where = f"on {host}" if any_port else f"on {host} port {port}"
            raise RadiomicsLabError(f"Cannot listen {where}: {error.strerror or error}; choose another "
                                    f"{'--host (an address of this machine)' if any_port else '--host or --port'}."
                                    ) from None


def check_origin(_ctx, _param, values):
    from RadiomicsLabLib.errors import RadiomicsLabError
    from RadiomicsLabLib.web.security import format_origin, parse_origin

    try:
        return tuple(format_origin(parse_origin(v)) for v in values)
    except RadiomicsLabError as error:
        raise click.BadParameter(str(error)) from None


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback lets other machines open the app (no login).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Folder whose images, segmentations and studies the page may open (default: the reference "
                   "data folder, RADIOMICSLAB_DATA). Nothing outside it is reachable from the browser.")
@click.option("--output", "output_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder where cohort runs started from the page write their results (default: "
                   "RADIOMICSLAB_WEB_OUTPUT, else ~/RadiomicsLab/web-output).")
@click.option("--max-upload-mb", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Largest upload accepted from the browser, in MB.")
@click.option("--allow-origin", "allowed_origins", multiple=True, callback=check_origin, metavar="URL",
              help="Another web origin (scheme://host:port) whose pages may open the app, e.g. the address other "
                   "machines use with --host 0.0.0.0, or a proxy's. Repeatable. By default only this server's own "
                   "page (http://127.0.0.1:PORT, http://localhost:PORT, the --host address) may.")
def command(host, port, data_dir, output_dir, max_upload_mb, allowed_origins):
    """Serve the web GUI: views, segment editor, extraction and the workflow panels.

    Open the printed address in a browser. One study per server; Ctrl-C stops it.
    """
    from RadiomicsLabLib.data import data_dir as default_data_dir
    from RadiomicsLabLib.errors import RadiomicsLabError

    if not host.strip():  # getaddrinfo would take it as every interface
        raise RadiomicsLabError("--host is empty; give the address to listen on, e.g. 127.0.0.1 (this machine only).")
    addresses = resolve_listen_address(host, port)  # an unknown --host, or one not of this machine, fails at once
    check_bindable(host, port, addresses, any_port=True)
    if not is_loopback(host):
        click.echo(f"radiomicslab: warning: listening on {host}: any machine that can reach it can open the "
                   "app, read the data folder's images and upload files; there is no login. Use 127.0.0.1 "
                   "unless the network is trusted (browsers elsewhere also need --allow-origin with the "
                   "address they open).", err=True)
    folder = data_dir if data_dir is not None else default_data_dir()
    if not folder.is_dir():
        raise RadiomicsLabError(f"Data folder '{folder}' does not exist; give an existing folder with --data.")
    check_bindable(host, port, addresses)
    from RadiomicsLabLib.web.app import serve

    serve(host, port, folder, max_upload_mb * 2**20, announce=lambda line: click.echo(line, err=True),
          output_root=output_dir, allowed_origins=allowed_origins)
