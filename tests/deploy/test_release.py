"""The release workflow: linted by actionlint (with shellcheck on its run steps), and what it publishes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_support import CHART_DIR, ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"
SCRIPTS = [ROOT / "scripts" / name for name in ("setup", "test", "build-image", "lock-image")]


def tool(name: str) -> str:
    """A linter from the test extra (in the virtualenv) or from Debian (scripts/setup installs both)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/setup")
    return found


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("actionlint"), "-color=false", f"-shellcheck={tool('shellcheck')}", *map(str, paths)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


def test_workflows_lint_clean() -> None:
    result = actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: docker/build-push-action@v7\n        with:\n          platfroms: linux/arm64\n"
        "      - run: echo ${{ github.event.nonsense.x }} $undefined_var\n"
    )
    result = actionlint(broken)
    assert result.returncode == 1
    assert "platfroms" in result.stdout


def test_shell_scripts_pass_shellcheck() -> None:
    result = subprocess.run([tool("shellcheck"), *map(str, SCRIPTS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def release() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(RELEASE.read_text())
    return loaded


def steps(job: str) -> list[dict[str, object]]:
    jobs = release()["jobs"]
    assert isinstance(jobs, dict)
    found: list[dict[str, object]] = jobs[job]["steps"]
    return found


def test_release_builds_both_architectures_signs_and_attaches_an_sbom() -> None:
    build = next(s for s in steps("image") if str(s.get("uses", "")).startswith("docker/build-push-action"))
    options = build["with"]
    assert isinstance(options, dict)
    assert options["platforms"] == "linux/amd64,linux/arm64"
    assert options["push"] is True and options["sbom"] is True
    scripts = " ".join(str(s.get("run", "")) for s in steps("image"))
    assert 'cosign sign --yes "${IMAGE}@${DIGEST}"' in scripts
    assert "cosign attest --yes --type spdxjson" in scripts
    chart = " ".join(str(s.get("run", "")) for s in steps("chart"))
    assert "helm package deploy/helm/csi-xloud" in chart and 'helm push "dist/csi-xloud-${VERSION}.tgz"' in chart
    assert "cosign sign --yes" in chart
    jobs = release()["jobs"]
    assert isinstance(jobs, dict)
    assert jobs["image"]["permissions"]["id-token"] == "write"  # keyless signing


def test_release_builds_the_emulator_image_like_the_driver_image() -> None:
    """The same Dockerfile's target "emulator", on the driver's cache, for both architectures, signed, with an SBOM."""
    builds = {
        job: next(s for s in steps(job) if str(s.get("uses", "")).startswith("docker/build-push-action"))["with"]
        for job in ("image", "emulator-image")
    }
    driver, emulator = builds["image"], builds["emulator-image"]
    assert isinstance(driver, dict) and isinstance(emulator, dict)
    assert (driver["target"], emulator["target"]) == ("driver", "emulator")
    assert emulator["build-contexts"].split() == ["emulator-src=csi_xloud"]
    assert emulator["platforms"] == driver["platforms"] and emulator["sbom"] is True and emulator["push"] is True
    assert "type=gha,scope=driver" in emulator["cache-from"].split()
    scripts = " ".join(str(s.get("run", "")) for s in steps("emulator-image"))
    assert 'cosign sign --yes "${EMULATOR_IMAGE}@${DIGEST}"' in scripts
    assert "cosign attest --yes --type spdxjson" in scripts
    jobs = release()["jobs"]
    assert isinstance(jobs, dict)
    assert jobs["emulator-image"]["permissions"]["id-token"] == "write"
    assert "emulator-image" in jobs["chart"]["needs"]


def test_chart_defaults_to_the_image_the_release_pushes() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    env = release()["env"]
    assert isinstance(env, dict)
    assert values["image"]["repository"] == env["IMAGE"]
    assert values["image"]["tag"] == ""  # the chart's appVersion, which the release checks against the tag
    assert values["emulator"]["image"]["repository"] == env["EMULATOR_IMAGE"]
    assert values["emulator"]["image"]["tag"] == ""
    version_check = str(steps("versions")[1]["run"])
    assert "csi_xloud/__init__.py" in version_check and "appVersion" in version_check
