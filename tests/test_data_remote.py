"""Remote data (fsspec URLs) against real servers on 127.0.0.1: a moto S3 endpoint and an
HTTP server with range requests, basic auth, and a file that breaks off mid-read."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import make_synthetic_batch
from mubundle.cli import main
from mubundle.data import remote
from mubundle.data.native import batch_to_table, read_shard, write_shard
from mubundle.data.reader import EventStream
from mubundle.data.sources import expand_paths, list_pieces, read_events, read_piece
from mubundle.data.writers import write_hdf5

BUCKET = "mubundle-test"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_row_groups(batch, path: Path, rows_per_group: int) -> None:
    pq.write_table(batch_to_table(batch), path, row_group_size=rows_per_group)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A small dataset: a native file in 4 row groups, a legacy HDF5 file, a bookkeeping file."""
    root = tmp_path_factory.mktemp("remote-data")
    (root / "run" / "_quarantine").mkdir(parents=True)
    write_row_groups(make_synthetic_batch(200, seed=1), root / "run" / "a.parquet", 50)
    write_hdf5(make_synthetic_batch(120, seed=2), root / "run" / "b.h5")
    write_shard(make_synthetic_batch(10, seed=3), root / "run" / "_quarantine" / "skip.parquet")
    bad = make_synthetic_batch(30, seed=5)
    bad.conditions[7, 0] = np.nan  # one row with a non-finite primary energy
    write_shard(bad, root / "bad" / "c.parquet")
    return root


# --------------------------------------------------------------------------- S3 (moto)
@pytest.fixture(scope="module")
def s3(data_dir):
    """moto's standalone S3 server on a free local port, fake credentials from the
    environment (the usual place), the dataset uploaded under s3://BUCKET/run/."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        }.items():
            patch.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            client = boto3.client("s3")
            client.create_bucket(Bucket=BUCKET)
            for path in [*(data_dir / "run").rglob("*.*"), data_dir / "bad" / "c.parquet"]:
                client.upload_file(str(path), BUCKET, str(path.relative_to(data_dir)))
            import fsspec

            fsspec.filesystem("s3").invalidate_cache()
            yield f"s3://{BUCKET}"
        finally:
            server.stop()


def test_s3_directories_and_globs_expand_like_local_ones(s3):
    assert expand_paths(f"{s3}/run/") == [f"{s3}/run/a.parquet", f"{s3}/run/b.h5"]  # _quarantine skipped
    assert expand_paths(f"{s3}/run/*.parquet") == [f"{s3}/run/a.parquet"]
    assert expand_paths(f"{s3}/run/*.nothing") == [f"{s3}/run/*.nothing"]  # kept, so reading names it


def test_s3_files_give_the_same_pieces_and_events_as_local_files(s3, data_dir):
    remote_pieces = list_pieces(f"{s3}/run/a.parquet")
    assert [p.n_rows for p in remote_pieces] == [50, 50, 50, 50]
    local = read_events(data_dir / "run")
    loaded = read_events(f"{s3}/run/")
    assert loaded.failed_files == [] and loaded.layouts == {f"{s3}/run/a.parquet": "native", f"{s3}/run/b.h5": "legacy-hdf5"}
    for name in ("conditions", "counts", "flat_muons"):
        np.testing.assert_array_equal(getattr(loaded.batch, name), getattr(local.batch, name))
    # the training reader: same batches in the same order
    batches = [list(EventStream(src, batch_size=64, seed=3, epochs=1)) for src in (data_dir / "run", f"{s3}/run/")]
    assert len(batches[0]) == len(batches[1]) > 1
    for a, b in zip(*batches):
        np.testing.assert_array_equal(a.flat_muons, b.flat_muons)


def test_inspect_and_convert_accept_s3_urls_and_name_a_missing_one(s3, tmp_path, capsys):
    assert main(["inspect", "--json", f"{s3}/run/", f"{s3}/run/missing.parquet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"] == 320
    assert report["failed_files"] == [{"path": f"{s3}/run/missing.parquet", "error": "file not found"}]
    assert main(["convert", f"{s3}/run/*.parquet", "--out", str(tmp_path / "converted")]) == 0
    converted = read_events(tmp_path / "converted")
    assert len(converted.batch) == 200 and converted.failed_files == []


def test_bad_rows_of_an_s3_file_are_counted_and_quarantined_under_its_url(s3, tmp_path):
    url = f"{s3}/bad/c.parquet"
    loaded = read_events(url)
    assert len(loaded.batch) == 29 and sum(loaded.rejected.values()) == 1
    assert list(loaded.rejected_rows.files) == [url] and list(loaded.rejected_rows.rows) == [7]
    stream = EventStream(url, batch_size=8, seed=0, epochs=1, quarantine_dir=tmp_path / "q")
    assert sum(len(b) for b in stream) == 29
    assert stream.report["rejected"] == loaded.rejected and len(stream.report["quarantine_files"]) == 1
    quarantined = pq.read_table(stream.report["quarantine_files"][0]).to_pylist()
    assert url in json.dumps(quarantined, default=str)


def test_generate_reads_primaries_from_s3_as_from_a_local_file(s3, data_dir, tmp_path):
    from mubundle.generate.api import load_model
    from mubundle.generate.run import generate_from_primaries

    model = load_model()
    # synthetic primaries reach outside the shipped model's domain: the reading is under test
    local = generate_from_primaries(model, data_dir / "run" / "a.parquet", tmp_path / "local.parquet", progress=False,
                                    allow_extrapolation=True)
    remote_run = generate_from_primaries(model, f"{s3}/run/a.parquet", tmp_path / "remote.parquet", progress=False,
                                         allow_extrapolation=True)
    assert local.events == remote_run.events == 200 and remote_run.failed_files == []
    np.testing.assert_array_equal(read_shard(tmp_path / "local.parquet").flat_muons, read_shard(tmp_path / "remote.parquet").flat_muons)


# --------------------------------------------------------------------------- HTTP
class _Handler(BaseHTTPRequestHandler):
    """Serves ``root`` with single-range requests; ``/private/`` needs basic auth
    user:secret; ``/broken.parquet`` announces its full length and closes half-way."""

    root: Path
    sent: list[int]

    def log_message(self, *args):  # keep the test output clean
        pass

    def _body(self) -> bytes | None:
        if self.path.startswith("/private/"):
            expected = "Basic " + base64.b64encode(b"user:secret").decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
        path = self.root / self.path.split("?", 1)[0].lstrip("/")
        if not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return path.read_bytes()

    def do_HEAD(self):
        body = self._body()
        if body is not None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

    def do_GET(self):
        body = self._body()
        if body is None:
            return
        start, stop = 0, len(body)
        ranged = self.headers.get("Range")
        if ranged:
            first, last = ranged.split("=", 1)[1].split("-")
            start, stop = int(first), min(len(body), int(last) + 1 if last else len(body))
        part = body[start:stop]
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(len(part)))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(body)}")
        self.end_headers()
        if self.path.startswith("/broken"):
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(part)
        self.sent.append(len(part))


@pytest.fixture(scope="module")
def http(data_dir):
    root = data_dir / "www"
    (root / "private").mkdir(parents=True)
    shutil.copy(data_dir / "run" / "a.parquet", root / "a.parquet")
    shutil.copy(data_dir / "run" / "a.parquet", root / "broken.parquet")
    shutil.copy(data_dir / "run" / "b.h5", root / "private" / "b.h5")
    big = make_synthetic_batch(16_000, seed=4)
    write_row_groups(big, root / "big.parquet", 1000)  # 16 pieces
    handler = type("Handler", (_Handler,), {"root": root, "sent": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_file_that_breaks_off_mid_read_is_one_failed_file_and_the_run_goes_on(http, data_dir):
    base, _ = http
    loaded = read_events([f"{base}/a.parquet", f"{base}/broken.parquet", f"{base}/private/b.h5".replace("://", "://user:secret@")])
    assert len(loaded.batch) == 200 + 120
    assert len(loaded.failed_files) == 1
    failure = loaded.failed_files[0]
    assert failure["path"] == f"{base}/broken.parquet"
    assert "\n" not in failure["error"] and failure["error"]


def test_url_credentials_reach_the_server_but_no_message_or_record(http, capsys):
    base, _ = http
    secret_url = base.replace("://", "://user:secret@") + "/private/b.h5?authz=TOKEN123"
    loaded = read_events(secret_url)
    assert len(loaded.batch) == 120 and loaded.failed_files == []
    assert list(loaded.layouts) == [f"{base}/private/b.h5?authz=***"]
    missing = base.replace("://", "://user:secret@") + "/private/none.h5?authz=TOKEN123"
    assert main(["inspect", "--json", missing]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "none.h5" in text and "secret" not in text and "TOKEN123" not in text
    wrong = base.replace("://", "://user:wrong@") + "/private/b.h5"
    failed = read_events(wrong).failed_files
    assert failed and failed[0]["path"] == f"{base}/private/b.h5" and "wrong" not in failed[0]["error"]


def test_one_piece_is_read_with_range_requests_not_a_full_download(http, monkeypatch):
    base, handler = http
    monkeypatch.setattr(remote, "BLOCK_SIZE", 64 * 1024)
    url = f"{base}/big.parquet"
    pieces = list_pieces(url)
    assert len(pieces) == 16
    size = os.path.getsize(handler.root / "big.parquet")
    handler.sent.clear()
    accepted, _ = read_piece(pieces[3])
    assert len(accepted) == 1000
    # the footer (pyarrow reads the last 64 KiB), the row group, one read-ahead block
    assert sum(handler.sent) < size / 3, (sum(handler.sent), size)


def test_a_scheme_without_its_package_names_the_package_to_install():
    pytest.importorskip("fsspec")
    try:
        import fsspec_xrootd  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("fsspec-xrootd is installed here: root:// URLs are readable")
    loaded = read_events(["root://127.0.0.1//store/x.parquet"])
    assert loaded.failed_files == [{
        "path": "root://127.0.0.1//store/x.parquet",
        "error": "MissingFilesystemError: the root:// scheme needs the package fsspec-xrootd (pip install fsspec-xrootd)",
    }]


def test_redact_removes_userinfo_and_secret_query_values_only():
    assert remote.redact("https://u:p@host:8/a.h5?authz=T&v=2") == "https://host:8/a.h5?authz=***&v=2"
    assert remote.redact("s3://bucket/k.parquet?X-Amz-Signature=abc") == "s3://bucket/k.parquet?X-Amz-Signature=***"
    assert remote.redact("osdf:///ospool/data/a.parquet") == "osdf:///ospool/data/a.parquet"


def test_a_url_that_cannot_be_opened_says_why_not_just_file_not_found(http):
    """fsspec's HTTP filesystem reports every failure as FileNotFoundError; the reason is kept."""
    base, _ = http
    assert remote.why_missing(f"{base}/a.parquet") is None
    assert remote.why_missing(f"{base}/none.parquet") == "file not found (HTTP 404 Not Found)"
    refused = remote.why_missing(base.replace("://", "://user:wrong@") + "/private/b.h5")
    assert refused == "refused by the server (HTTP 401 Unauthorized)"
    unreachable = f"http://user:secret@127.0.0.1:{free_port()}/a.parquet"  # nothing listens there
    reason = remote.why_missing(unreachable)
    assert reason.startswith("could not reach the server: ") and "secret" not in reason
    failed = read_events(unreachable.replace("user:secret@", "")).failed_files
    assert failed[0]["error"].startswith("could not reach the server")
