"""``radiomicslab web``: RadiomicsLab in the browser (trame-slicer), served on this workstation."""

import ipaddress
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
def command(host, port, data_dir, output_dir, max_upload_mb):
    """Serve the web GUI: views, segment editor, extraction and the workflow panels.

    Open the printed address in a browser. One study per server; Ctrl-C stops it.
    """
    from RadiomicsLabLib.data import data_dir as default_data_dir
    from RadiomicsLabLib.errors import RadiomicsLabError

    if not is_loopback(host):
        click.echo(f"radiomicslab: warning: listening on {host}: any machine that can reach it can open the "
                   "app, read the data folder's images and upload files; there is no login. Use 127.0.0.1 "
                   "unless the network is trusted.", err=True)
    folder = data_dir if data_dir is not None else default_data_dir()
    if not folder.is_dir():
        raise RadiomicsLabError(f"Data folder '{folder}' does not exist; give an existing folder with --data.")
    from RadiomicsLabLib.web.app import serve

    serve(host, port, folder, max_upload_mb * 2**20, announce=lambda line: click.echo(line, err=True), output_root=output_dir)
