"""Importing docker-save and OCI archives into a tree: layers in order, whiteouts, and
hostile entries refused by name. Archives are written here (tests/archives.py); the
importer writes real files into a temporary tree."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from archives import Item, device, docker_save, file, folder, hardlink, layer, oci_layout, symlink

from infra_operator.errors import InvalidRequest
from infra_operator.images import BadArchive, add_agent, import_archive

# Not the unit tier: applying each entry's owner takes root, as the import does in production.

LOWER = [
    folder("etc"), file("etc/kept", "kept\n"), file("etc/gone", "gone\n"), file("etc/changed", "old\n"),
    folder("opt"), folder("opt/app"), file("opt/app/old-1", "1"), folder("opt/app/old-dir"), file("opt/app/old-dir/x"),
    folder("usr"), folder("usr/bin"), symlink("bin", "usr/bin"), file("usr/bin/tool", "#!/bin/sh\n", 0o755),
]
UPPER = [
    file("etc/.wh.gone"), file("etc/changed", "new\n"),
    # The opaque marker may come after the layer's own entries of the folder: they stay.
    file("opt/app/new", "new\n"), file("opt/app/.wh..wh..opq"),
    file("bin/via-link", "through the link\n"),  # bin -> usr/bin, followed inside the tree
    hardlink("usr/bin/tool-again", "usr/bin/tool"),
]
Writer = Callable[[Path, list[bytes]], Path]
FORMATS: dict[str, Writer] = {"docker-save": docker_save, "oci": oci_layout}


def read(path: Path) -> str:
    return path.read_text()


@pytest.mark.parametrize("kind", FORMATS)
def test_layers_apply_in_order_with_whiteouts_and_opaque_folders(tmp_path: Path, kind: str) -> None:
    archive = FORMATS[kind](tmp_path / "image.tar", [layer(LOWER), layer(UPPER)])
    tree = tmp_path / "tree"
    tree.mkdir()
    lines: list[str] = []
    import_archive(archive, tree, lines.append)
    assert read(tree / "etc/kept") == "kept\n"
    assert read(tree / "etc/changed") == "new\n"
    assert not (tree / "etc/gone").exists() and not (tree / "etc/.wh.gone").exists()
    assert sorted(os.listdir(tree / "opt/app")) == ["new"], "opaque: the lower layer's entries are gone"
    assert read(tree / "usr/bin/via-link") == "through the link\n" and (tree / "bin").is_symlink()
    assert os.stat(tree / "usr/bin/tool-again").st_ino == os.stat(tree / "usr/bin/tool").st_ino
    assert os.stat(tree / "usr/bin/tool").st_mode & 0o777 == 0o755
    assert any("layer 2 of 2" in line for line in lines), lines


def test_a_gzipped_docker_save_is_read_too(tmp_path: Path) -> None:
    plain = docker_save(tmp_path / "image.tar", [layer(LOWER)])
    import gzip
    packed = tmp_path / "image.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    tree = tmp_path / "tree"
    tree.mkdir()
    import_archive(packed, tree, lambda line: None)
    assert read(tree / "etc/kept") == "kept\n"


ESCAPED = f"escaped-{uuid.uuid4().hex[:8]}"
HOSTILE: dict[str, tuple[list[Item], str]] = {
    "absolute path": ([file(f"/tmp/{ESCAPED}", "x")], "absolute path refused"),
    "dot-dot": ([folder("etc"), file(f"etc/../../{ESCAPED}", "x")], "path with '..' refused"),
    "device node": ([folder("dev"), device("dev/mem")], "device node refused: dev/mem"),
    "symlink escape": ([symlink("up", f"../../{ESCAPED}")], "symbolic link escaping the image refused: up"),
    "hard link escape": ([hardlink("passwd", "../../etc/passwd")], "hard link escaping the image refused: passwd"),
}


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_entries_are_refused_by_name(tmp_path: Path, case: str, kind: str) -> None:
    items, message = HOSTILE[case]
    archive = FORMATS[kind](tmp_path / "image.tar", [layer([folder("etc"), file("etc/ok", "ok")]), layer(items)])
    tree = tmp_path / "a" / "b" / "tree"
    tree.mkdir(parents=True)
    with pytest.raises(BadArchive) as refused:
        import_archive(archive, tree, lambda line: None)
    assert message in refused.value.message and "layer 2" in refused.value.message, refused.value.message
    assert refused.value.status == 400
    for outside in (tmp_path, tmp_path / "a", Path("/tmp")):
        assert not (outside / ESCAPED).exists(), f"{case} wrote outside the tree"


def test_an_absolute_link_is_followed_inside_the_tree_never_on_the_host(tmp_path: Path) -> None:
    marker = f"written-{uuid.uuid4().hex[:8]}"
    archive = docker_save(tmp_path / "image.tar", [layer([symlink("root", "/"), symlink("hosttmp", "/tmp")]),
                                                   layer([file(f"root/{marker}", "a"), file(f"hosttmp/{marker}", "b")])])
    tree = tmp_path / "tree"
    tree.mkdir()
    import_archive(archive, tree, lambda line: None)
    assert read(tree / marker) == "a" and read(tree / "tmp" / marker) == "b"
    assert not Path("/", marker).exists() and not Path("/tmp", marker).exists()


def test_what_is_not_an_image_archive_says_so(tmp_path: Path) -> None:
    not_tar = tmp_path / "notes.txt"
    not_tar.write_text("hello")
    with pytest.raises(BadArchive, match="not a tar archive"):
        import_archive(not_tar, tmp_path, lambda line: None)
    bare = tmp_path / "bare.tar"
    bare.write_bytes(layer([file("etc/x")]))
    with pytest.raises(BadArchive, match=r"neither manifest.json \(docker save\) nor index.json"):
        import_archive(bare, tmp_path, lambda line: None)
    with pytest.raises(InvalidRequest, match="no such image archive"):
        import_archive(tmp_path / "missing.tar", tmp_path, lambda line: None)


def test_the_agent_needs_python3_and_finds_it_where_images_put_it(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    (bare / "usr/bin").mkdir(parents=True)
    with pytest.raises(InvalidRequest, match="the image has no python3"):
        add_agent(bare, lambda line: None)

    official = tmp_path / "official"  # python:3-slim has it in /usr/local/bin only
    (official / "usr/local/bin").mkdir(parents=True)
    (official / "usr/local/bin/python3").write_text("")
    lines: list[str] = []
    add_agent(official, lines.append)
    assert os.readlink(official / "usr/bin/python3") == "/usr/local/bin/python3"
    assert (official / "opt/infra-operator/guest").is_dir() and (official / "work").is_dir()
    assert os.stat(official / "tmp").st_mode & 0o7777 == 0o1777
    assert "linked from /usr/bin/python3" in lines[-1]
