"""What a visitor of the page may make the server read, and what binding beyond this machine exposes."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re

__all__ = ["AppAccess", "local_video_path", "has_scheme", "is_loopback_host", "exposure_notice",
           "DEFAULT_URL_TIMEOUT"]

DEFAULT_URL_TIMEOUT = 60.0  # seconds for a whole download (lookup, connection, headers and body)


@dataclasses.dataclass(frozen=True)
class AppAccess:
    """What the page may read: local videos under ``video_dirs``; http(s) URLs when ``urls`` (private: if allowed)."""

    video_dirs: tuple = ()
    urls: bool = True
    private_urls: bool = False
    url_timeout: float = DEFAULT_URL_TIMEOUT

    def __post_init__(self):
        dirs = (self.video_dirs,) if isinstance(self.video_dirs, (str, os.PathLike)) else tuple(self.video_dirs)
        for folder in dirs:
            if not os.path.isdir(folder):
                raise ValueError(f"video folder {os.fspath(folder)!r} is not a folder (--video-dir)")
        object.__setattr__(self, "video_dirs", tuple(dict.fromkeys(os.path.realpath(d) for d in dirs)))
        value = self.url_timeout
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"url_timeout must be a positive number of seconds, got {value!r}")


def has_scheme(text: str) -> bool:
    """True for text that starts like a URL (``scheme:`` with ``//``), e.g. ftp://, file:///."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def local_video_path(text: str, access: AppAccess) -> str:
    """The real path of a typed path under one of the video folders; else ValueError not telling if it exists."""
    if not access.video_dirs:
        raise ValueError(f"video path {text!r} refused: this app reads no local paths (upload the video, or start "
                         "the app with --video-dir DIR)")
    real = os.path.realpath(os.path.expanduser(text))
    if not any(_inside(real, folder) for folder in access.video_dirs):
        raise ValueError(f"video path {text!r} refused: this app reads local videos only under its video folders "
                         "(--video-dir)")
    return real


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or below it (both real paths)."""
    return os.path.commonpath([path, folder]) == folder


def is_loopback_host(host: str) -> bool:
    """True for an address only this machine reaches: localhost, 127.0.0.0/8, ::1."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[] ")).is_loopback
    except ValueError:
        return False


def exposure_notice(host: str, access: AppAccess, index_dir: str | None, max_upload_mb: float) -> list[str]:
    """Lines saying what the app serves to the network when it binds to ``host`` beyond loopback; [] on loopback."""
    if is_loopback_host(host):
        return []
    lines = [f"xclip-hf app: WARNING: listening on {host or 'all addresses'} exposes the app to the network: anyone "
             "who reaches it can classify uploaded videos and run searches"]
    if access.video_dirs:
        lines.append("  it reads local videos typed into the page under: " + ", ".join(access.video_dirs))
    else:
        lines.append("  it reads no local paths typed into the page (--video-dir DIR allows a folder)")
    if index_dir is not None:
        lines.append(f"  it plays the videos of the index {index_dir!r} that searches return")
    if not access.urls:
        lines.append("  it fetches no URLs (--no-urls)")
    elif access.private_urls:
        lines.append(f"  it fetches http(s) URLs, also of loopback and private-network addresses "
                     f"(--allow-private-urls): visitors can reach this machine's and this network's services; "
                     f"up to {max_upload_mb:g} MB and {access.url_timeout:g} s each")
    else:
        lines.append(f"  it fetches http(s) URLs of public internet addresses (up to {max_upload_mb:g} MB and "
                     f"{access.url_timeout:g} s each; --no-urls turns this off)")
    return lines
