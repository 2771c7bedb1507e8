#!/usr/bin/env python3
"""Comprueba el libro antes de `mdbook build docs` (que solo avisa de lo que aquí es un error).

Uso: python3 docs/check.py        (desde cualquier carpeta; sale con 1 si algo falla)

Comprueba:
1. Cada página de SUMMARY.md existe, y cada .md de src/ está en SUMMARY.md (si no, no se publica).
2. Cada {{#include ...}} apunta a un fichero que existe y, si nombra un ancla, el fichero tiene
   `ANCHOR: nombre` y `ANCHOR_END: nombre`; si da líneas, el fichero las tiene.
3. Ningún bloque ```rust contiene código pegado: solo directivas {{#include}}; y cada include de
   un fichero .rs está en un bloque ```rust.
4. Cada enlace relativo apunta a un fichero del libro (dentro de src/) que existe, y cada
   #fragmento a un encabezado de esa página.
5. Ninguna página fuera de ejercicios/soluciones/ enlaza a las soluciones, para que un
   instructor pueda quitarlas del libro sin romper nada.
Solo biblioteca estándar de Python 3.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from pathlib import Path
from urllib.parse import unquote

DOCS = Path(__file__).resolve().parent
SRC = DOCS / "src"
SOLUTIONS = SRC / "ejercicios" / "soluciones"

INCLUDE = re.compile(r"(?<!\\)\{\{#(include|rustdoc_include)\s+([^}\s]+)\s*\}\}")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HREF = re.compile(r"""<(?:a|img)\s[^>]*(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
ANCHOR_ID = re.compile(r"""<a\s+(?:id|name)\s*=\s*["']([^"']+)["']""", re.I)
SUMMARY_LINK = re.compile(r"\[[^\]]*\]\(([^)]*)\)")

errors: list[str] = []


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(DOCS.parent))
    except ValueError:
        return str(path)


def error(page: Path, line: int, message: str) -> None:
    errors.append(f"{rel(page)}:{line}: {message}")


def strip_code(lines: list[str]) -> list[tuple[int, str, bool, str]]:
    """(número de línea, texto, dentro de un bloque de código, lenguaje del bloque)."""
    out = []
    fence = None
    lang = ""
    for number, text in enumerate(lines, 1):
        match = FENCE.match(text)
        if fence is None and match:
            fence = match.group(2)
            lang = match.group(3).strip().split(",")[0].strip().lower()
            out.append((number, text, True, "<fence>"))
            continue
        if fence is not None and match and match.group(2).startswith(fence[0] * len(fence)) \
                and not match.group(3).strip():
            fence = None
            out.append((number, text, True, "<fence>"))
            continue
        out.append((number, text, fence is not None, lang if fence is not None else ""))
    return out


def normalize_id(text: str) -> str:
    """El id que mdBook da a un encabezado (`normalize_id` de mdBook)."""
    text = re.sub(r"<[^>]+>", "", text)  # etiquetas HTML
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # enlaces: solo su texto
    text = text.replace("`", "").replace("*", "").replace("_", "_")
    out = []
    for char in text.strip():
        if char.isalnum() or char in "_-":
            out.append(char.lower())
        elif char.isspace():
            out.append("-")
    return unicodedata.normalize("NFC", "".join(out))


def heading_ids(page: Path) -> set[str]:
    ids: set[str] = set()
    seen: dict[str, int] = {}
    for _, text, in_code, _ in strip_code(page.read_text(encoding="utf-8").splitlines()):
        if in_code:
            continue
        for anchor in ANCHOR_ID.findall(text):
            ids.add(anchor)
        match = HEADING.match(text)
        if not match:
            continue
        base = normalize_id(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        ids.add(base if count == 0 else f"{base}-{count}")
    return ids


def summary_pages() -> list[Path]:
    summary = SRC / "SUMMARY.md"
    if not summary.is_file():
        error(summary, 0, "no existe SUMMARY.md")
        return []
    pages = []
    for number, text, in_code, _ in strip_code(summary.read_text(encoding="utf-8").splitlines()):
        if in_code:
            continue
        for target in SUMMARY_LINK.findall(text):
            target = target.strip()
            if not target:
                error(summary, number, "entrada sin página (borrador vacío): escribe la página o quita la línea")
                continue
            page = (SRC / unquote(target)).resolve()
            if not page.is_file():
                error(summary, number, f"la página «{target}» de SUMMARY.md no existe")
                continue
            pages.append(page)
    return pages


def check_include(page: Path, number: int, target: str) -> None:
    path_part, _, selector = target.partition(":")
    file = (page.parent / path_part).resolve()
    if not file.is_file():
        error(page, number, f"{{{{#include}}}}: no existe el fichero «{path_part}»")
        return
    if not selector:
        return
    lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    if re.fullmatch(r"\d*(:\d*)?", selector):
        numbers = [int(n) for n in selector.split(":") if n]
        if numbers and max(numbers) > len(lines):
            error(page, number, f"{{{{#include}}}}: «{rel(file)}» tiene {len(lines)} líneas, no {max(numbers)}")
        return
    name = re.escape(selector)
    start = re.compile(rf"ANCHOR:\s*{name}\b(?![-\w])")
    end = re.compile(rf"ANCHOR_END:\s*{name}\b(?![-\w])")
    starts = [i for i, line in enumerate(lines) if start.search(line)]
    ends = [i for i, line in enumerate(lines) if end.search(line)]
    if not starts:
        error(page, number, f"{{{{#include}}}}: «{rel(file)}» no tiene el ancla «{selector}» (falta `// ANCHOR: {selector}`)")
    elif not ends or ends[0] < starts[0]:
        error(page, number, f"{{{{#include}}}}: «{rel(file)}» abre el ancla «{selector}» pero no la cierra (`// ANCHOR_END: {selector}`)")
    elif ends[0] == starts[0] + 1:
        error(page, number, f"{{{{#include}}}}: el ancla «{selector}» de «{rel(file)}» está vacía")


def check_link(page: Path, number: int, target: str, ids: dict[Path, set[str]]) -> None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
        return  # http:, https:, mailto:…: enlaces externos, no se comprueban sin red
    path_part, _, fragment = target.partition("#")
    path_part = unquote(path_part)
    if path_part:
        file = (page.parent / path_part).resolve()
        try:
            file.relative_to(SRC)
        except ValueError:
            error(page, number, f"enlace «{target}» fuera del libro (docs/src): en la web publicada no existe; "
                                f"nombra el fichero como `código` en su lugar")
            return
        if not file.exists():
            error(page, number, f"enlace roto: «{path_part}» no existe")
            return
        if page.parent != SOLUTIONS and SOLUTIONS not in page.parents and (file == SOLUTIONS or SOLUTIONS in file.parents):
            error(page, number, f"enlace a las soluciones («{target}») desde fuera de ejercicios/soluciones/: "
                                f"un instructor debe poder quitarlas sin romper el libro")
    else:
        file = page
    if fragment and file.suffix == ".md":
        if file not in ids:
            ids[file] = heading_ids(file)
        if unquote(fragment) not in ids[file]:
            error(page, number, f"enlace roto: «{rel(file)}» no tiene el encabezado «#{fragment}»")


def main() -> int:
    pages = summary_pages()
    listed = set(pages)
    for md in sorted(SRC.rglob("*.md")):
        if md.name != "SUMMARY.md" and md.resolve() not in listed:
            error(md, 0, "esta página no está en SUMMARY.md, así que no se publica: añádela o bórrala")
    ids: dict[Path, set[str]] = {}
    rust_blocks = 0
    for page in sorted(set(pages)):
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, text, in_code, lang in strip_code(lines):
            for kind, target in INCLUDE.findall(text):
                check_include(page, number, target)
                if target.partition(":")[0].endswith(".rs") and lang not in ("rust", "rs"):
                    error(page, number, "un listado de Rust va en un bloque ```rust (resaltado y sin ejecutar)")
            if in_code:
                if lang in ("rust", "rs") and text.strip() and not INCLUDE.fullmatch(text.strip()):
                    error(page, number, "código Rust pegado en un bloque ```rust: inclúyelo desde un fichero "
                                        "compilado con {{#include ruta:ancla}}")
                if lang in ("rust", "rs") and INCLUDE.fullmatch(text.strip()):
                    rust_blocks += 1
                continue
            inline_free = re.sub(r"`[^`]*`", "", text)
            for target in LINK.findall(inline_free) + IMAGE.findall(inline_free) + HREF.findall(inline_free):
                check_link(page, number, target, ids)
    if errors:
        print(f"docs/check.py: {len(errors)} problema(s) en el libro:", file=sys.stderr)
        for line in errors:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"docs/check.py: libro correcto ({len(pages)} páginas, {rust_blocks} listados incluidos desde código compilado).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
