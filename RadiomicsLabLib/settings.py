"""Extraction settings: pyradiomics parameter files (YAML/JSON) and named presets, validated up front.

A settings object is the parameter dictionary (pyradiomics sections ``imageType``, ``featureClass``,
``setting``; for the IBSI engine an ``ibsi`` section, see :mod:`RadiomicsLabLib.ibsi.params`), where
it came from, and the engine that runs it: ``pyradiomics`` (the pyradiomics package itself), ``native``
(RadiomicsLab's implementation of pyradiomics' features, :mod:`RadiomicsLabLib.pyradiomics_native`: same
names, definitions and parameter files, no pyradiomics package needed) or ``ibsi``; a file may declare
``engine: ibsi``. Without an engine named, ``pyradiomics`` runs when it is installed and ``native``
otherwise (desktop Slicer installs binary wheels only, and pyradiomics is published as a source archive).
Validation uses pyradiomics' own schema (with pykwalify when both are installed, else the same schema as a
native table), the native engine's and the IBSI engine's checks, and every problem is reported with the
key that caused it.
"""

import difflib
import functools
import importlib.metadata
import importlib.util
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RadiomicsLabError

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "pyradiomics-default"
ENGINES = ("pyradiomics", "ibsi", "native")
_ENGINE_KEYS = ("engine", "ibsi")  # RadiomicsLab's own keys, not pyradiomics'


@dataclass(frozen=True)
class ExtractionSettings:
    """A validated parameter dictionary, its source (preset name or file path) and its engine."""

    source: str
    params: dict = field(default_factory=dict)
    engine: str = "pyradiomics"

    @property
    def pyradiomics_params(self) -> dict:
        """The parameters in pyradiomics' own format (RadiomicsLab's ``engine`` / ``ibsi`` keys removed)."""
        return {k: v for k, v in self.params.items() if k not in _ENGINE_KEYS}

    def extractor(self):
        """A configured pyradiomics ``RadiomicsFeatureExtractor`` (validated: no schema check again)."""
        return _build_extractor(self.pyradiomics_params, self.source, validate=False)

    def ibsi(self):
        """(IbsiSettings, families) for the IBSI engine."""
        from .ibsi.params import ibsi_settings_from_params

        return ibsi_settings_from_params(self.params, self.source)

    def native(self):
        """The :class:`~RadiomicsLabLib.pyradiomics_native.NativePlan` of the native engine (every refusal raised here)."""
        from .pyradiomics_native import plan_extraction

        return plan_extraction(self.pyradiomics_params, self.source)


def importable(module: str) -> bool:
    """Whether ``import module`` would find it (without importing it; a ``None`` in sys.modules blocks it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


#: The pyradiomics distribution RadiomicsLab is tested with (parity tests): (distribution name, version prefix).
TESTED_PYRADIOMICS = ("pyradiomics-bhklab", "3.1.")


def tested_pyradiomics_installed() -> bool:
    """Whether ``radiomics`` is importable and comes from the tested distribution (not, e.g., an older pyradiomics
    that SlicerRadiomics installed into Slicer's Python)."""
    if not importable("radiomics"):
        return False
    name, version = TESTED_PYRADIOMICS
    try:
        return importlib.metadata.version(name).startswith(version)
    except importlib.metadata.PackageNotFoundError:
        return False


def default_engine() -> str:
    """``pyradiomics`` where the tested pyradiomics package is installed, else ``native`` (pyradiomics' features,
    RadiomicsLab's code; equal to pyradiomics' baselines). An explicit ``engine="pyradiomics"`` uses whatever
    ``radiomics`` is installed."""
    return "pyradiomics" if tested_pyradiomics_installed() else "native"


def preset_names() -> list[str]:
    """Names of the shipped presets (``pyradiomics-default``, ...)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_settings(spec=None, image_types=None, engine: str | None = None) -> ExtractionSettings:
    """Settings from a preset name, a parameter file path, a dict, or None (the default preset).

    ``image_types`` (e.g. ``["LoG:sigma=1,3", "Wavelet"]`` or a dict) replaces the ``imageType``
    section, for choosing filters without writing a parameter file; ``engine`` overrides the
    engine the parameters declare (default :func:`default_engine`: ``pyradiomics`` when installed,
    else ``native``, which gives pyradiomics' features without it).
    """
    if isinstance(spec, ExtractionSettings) and not image_types and engine in (None, spec.engine):
        return spec
    trusted = False
    if isinstance(spec, ExtractionSettings):
        source, params = spec.source, dict(spec.params)
    elif isinstance(spec, dict):
        source, params = "parameters given as a dictionary", dict(spec)
    elif spec is None or str(spec) in preset_names():
        name = spec or DEFAULT_PRESET
        source, params, trusted = name, _read_yaml(PRESETS_DIR / f"{name}.yaml"), True
    else:
        path = Path(spec)
        if not path.is_file():
            raise RadiomicsLabError(
                f"'{spec}' is neither a preset ({', '.join(preset_names())}) nor an existing parameter file."
            )
        source, params = str(path), _read_yaml(path)
    if image_types:
        params["imageType"] = image_types if isinstance(image_types, dict) else parse_image_types(image_types)
        trusted = False
    engine = engine or params.get("engine") or default_engine()
    if engine not in ENGINES:
        raise RadiomicsLabError(f"Unknown engine '{engine}' in {source}; use {', '.join(ENGINES[:-1])} or {ENGINES[-1]}.")
    if engine in ("pyradiomics", "native") and "ibsi" in params:
        raise RadiomicsLabError(f"{source} has an 'ibsi' section, which only the IBSI engine reads; use --engine ibsi.")
    if engine == "pyradiomics" and not importable("radiomics"):
        raise RadiomicsLabError(
            f"The pyradiomics engine ({source}) needs the pyradiomics package (pyradiomics-bhklab), which is not "
            "installed; choose engine native (the same features computed by RadiomicsLab) or install pyradiomics.")
    settings = ExtractionSettings(source, params, engine)
    if not trusted:  # shipped presets are checked by the tests
        _validate(settings.pyradiomics_params, source)
        if engine in ("pyradiomics", "native"):
            _check_log_sigma(params, source)
        if engine == "ibsi":
            settings.ibsi()
    if engine == "native":
        settings.native()  # refuses what the native engine does not compute, before any work
    return settings


def _check_log_sigma(params: dict, source: str) -> None:
    """A LoG image type needs sigma values (its own or the setting section's): without them pyradiomics makes
    no LoG image and silently returns none of its features."""
    image_types = params.get("imageType") or {}
    if "LoG" in image_types and not ((image_types["LoG"] or {}).get("sigma") or (params.get("setting") or {}).get("sigma")):
        raise RadiomicsLabError(f"The LoG image type in {source} has no sigma, so no LoG features would be computed; "
                                "give sigma values in mm, e.g. imageType: {LoG: {sigma: [1.0, 3.0]}} or "
                                "--image-type 'LoG:sigma=1,3'.")


def parse_image_types(specs) -> dict:
    """``["Original", "LoG:sigma=1,3", "Wavelet:wavelet=db2;level=1"]`` -> pyradiomics ``imageType`` dict."""
    import yaml

    image_types = {}
    for spec in specs:
        name, _, options = str(spec).partition(":")
        custom = {}
        for option in filter(None, options.split(";")):
            key, eq, value = option.partition("=")
            if not eq:
                raise RadiomicsLabError(f"Image type option '{option}' in '{spec}' needs the form key=value.")
            values = [yaml.safe_load(v) for v in value.split(",")]
            custom[key.strip()] = values if len(values) > 1 or key.strip() == "sigma" else values[0]
        image_types[name.strip()] = custom
    return image_types


def _read_yaml(path: Path) -> dict:
    import yaml  # imported here: desktop Slicer may need to pip-install it first (see RadiomicsLab.py)

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise RadiomicsLabError(f"Invalid YAML in '{path}'{where}: {problem}; fix the parameter file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RadiomicsLabError(f"Cannot read parameter file '{path}': {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RadiomicsLabError(
            f"Parameter file '{path}' must be a mapping with sections imageType, featureClass, setting; "
            f"it holds a {type(data).__name__}."
        )
    return data


@functools.cache
def _schema() -> dict:
    """pyradiomics' parameter schema, parsed once per process (pykwalify re-parses it on every call)."""
    import yaml
    from radiomics import getParameterValidationFiles

    return yaml.load(Path(getParameterValidationFiles()[0]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _schema_keys(section: str) -> list[str]:
    mapping = _schema()["mapping"]
    if section in ("", "/"):
        return list(mapping)
    return list(mapping.get(section.strip("/").split("/")[0], {}).get("mapping", {}))


def _explain_schema_error(error, source: str) -> str:
    text = str(error)
    unknown = re.search(r"Key '([^']+)' was not defined\. Path: '([^']*)'", text)
    if unknown:
        key, section = unknown.groups()
        known = _schema_keys(section)
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
        where = f"section '{section.strip('/')}'" if section.strip("/") else "the top level"
        return f"Unknown setting '{key}' in {where} of {source}; {hint}"
    bad_value = re.search(r"Value '([^']*)' is not of type '([^']+)'\. Path: '([^']+)'", text)
    if bad_value:
        value, kind, path = bad_value.groups()
        return f"Invalid value '{value}' for setting '{path.strip('/').split('/')[-1]}' in {source}: expected {kind}."
    lines = [line.strip(" -") for line in text.splitlines() if line.strip(" -") and "Schema validation failed" not in line]
    return f"Invalid parameters in {source}: {'; '.join(lines) or text}"


def _validate(params: dict, source: str) -> dict:
    """Check ``params`` against pyradiomics' own schema (same rules as its extractor): with pykwalify and
    pyradiomics' schema file where both are installed, else with the native table of the same schema
    (:func:`RadiomicsLabLib.pyradiomics_native.validate_params`)."""
    if not (importable("pykwalify") and importable("radiomics")):
        from .pyradiomics_native import validate_params

        return validate_params(params, source)
    import pykwalify.core
    from pykwalify.errors import PyKwalifyException
    from radiomics import getParameterValidationFiles

    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)
    try:
        core = pykwalify.core.Core(source_data=params, schema_data=_schema(),
                                   extensions=[getParameterValidationFiles()[1]])
        return core.validate()
    except PyKwalifyException as error:
        raise RadiomicsLabError(_explain_schema_error(error, source)) from None
    except (ValueError, TypeError, KeyError) as error:  # raised by pyradiomics' schema functions
        raise RadiomicsLabError(f"Invalid parameters in {source}: {str(error).strip(chr(39))}") from None


def _build_extractor(params: dict, source: str, validate: bool = True):
    """A pyradiomics extractor configured as ``RadiomicsFeatureExtractor(params)`` would be."""
    from radiomics import featureextractor, setVerbosity

    setVerbosity(logging.ERROR)
    if validate:
        _validate(params, source)
    extractor = featureextractor.RadiomicsFeatureExtractor()  # defaults, no schema parsing
    # The same steps as pyradiomics' RadiomicsFeatureExtractor._applyParams after validation:
    extractor.enabledImagetypes = params.get("imageType") or {"Original": {}}
    extractor.enabledFeatures = params.get("featureClass") or {name: [] for name in extractor.featureClassNames}
    extractor.settings = extractor._getDefaultSettings()
    extractor.settings.update(params.get("setting") or {})
    extractor.settings.update(params.get("voxelSetting") or {})
    extractor._setTolerance()
    return extractor
