"""osmosis-beam: incremental data ingestion on Apache Beam."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
for line in (HERE / "osmosis_beam" / "__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, version)

METRICS = ["prometheus-client>=0.20"]
UI = ["starlette>=0.37", "uvicorn>=0.29", "Jinja2>=3.1"]

setup(
    name="osmosis-beam",
    version=version["__version__"],
    description="Incremental data ingestion (PostgreSQL, MongoDB, web, RSS) on Apache Beam",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["osmosis_beam", "osmosis_beam.*"]),
    package_data={"osmosis_beam": ["py.typed"], "osmosis_beam.ui": ["templates/*.html", "static/*"]},
    install_requires=[
        "apache-beam>=2.77.0,<2.78",
        "psycopg2-binary>=2.9",
        "pymongo>=4.6",
        "requests>=2.31",
        "lxml>=5.0",
        "cssselect>=1.2",
        "feedparser>=6.0",
        "croniter>=2.0",
        "PyYAML>=6.0",
        "orjson>=3.9",
    ],
    extras_require={
        # The Dataflow dry-run tests need the GCP libraries, so the test extra brings them; the dashboard's
        # browser tests need the ui and metrics extras and Playwright (driving Debian's chromium).
        "test": ["pytest>=8", "pytest-timeout>=2.3", "apache-beam[gcp]>=2.77.0,<2.78", "build>=1.0",
                 *METRICS, *UI, "playwright>=1.44"],
        "gcp": ["apache-beam[gcp]>=2.77.0,<2.78", "build>=1.0"],
        "metrics": METRICS,
        "ui": UI,
    },
    entry_points={
        "console_scripts": ["osmosis = osmosis_beam.cli:main"],
    },
    license="Apache-2.0",
    classifiers=["Programming Language :: Python :: 3.11"],
)
