# syntax=docker/dockerfile:1
# The csi-xloud image: one image for the controller and the node plugin.
#
#   scripts/build-image csi-xloud:0.1.0                        # the driver (the default target)
#   scripts/build-image --emulator csi-xloud-emulator:0.1.0    # target "emulator", for evaluation
#
# podman/buildah, online or air-gapped (see docs/install.md).
#
# Stage "build" installs the driver and the exact dependencies of deploy/image/requirements.txt
# (pinned with hashes) into a virtualenv without pip; only that virtualenv reaches the final
# stage, which adds the disk tools the node plugin runs and nothing that compiles or installs.
#
# Where pip gets the packages:
# - a wheelhouse mounted at /wheels during the build (`--volume DIR:/wheels:ro`, what
#   scripts/build-image does with wheels the host's own pip downloaded): installed with --no-index;
# - otherwise the index, through the optional build secrets `pip-conf` (a pip.conf: index URL,
#   credentials) and `pip-ca` (a CA bundle for a TLS-inspecting proxy). Secrets are mounted for
#   the one RUN that needs them and never written to a layer.

ARG PYTHON_IMAGE=docker.io/library/python:3.13-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# A Debian base built with mmdebstrap has no pip: only this stage gets Debian's.
RUN if ! python3 -m pip --version >/dev/null 2>&1; then \
      apt-get update \
      && apt-get install -y --no-install-recommends python3-pip \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv --without-pip /opt/venv
WORKDIR /src
COPY deploy/image/requirements.txt ./requirements.txt
RUN --mount=type=secret,id=pip-conf \
    --mount=type=secret,id=pip-ca \
    set -eu; \
    if [ -s /run/secrets/pip-conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip-conf; fi; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    if [ -d /wheels ] && ls /wheels/*.whl >/dev/null 2>&1; then \
      set -- --no-index --find-links /wheels; \
    fi; \
    python3 -m pip --python /opt/venv/bin/python install "$@" \
      --require-hashes --only-binary=:all: --no-deps -r requirements.txt
COPY pyproject.toml README.md ./
COPY csi_xloud ./csi_xloud
RUN --mount=type=secret,id=pip-conf \
    --mount=type=secret,id=pip-ca \
    set -eu; \
    if [ -s /run/secrets/pip-conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip-conf; fi; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    if [ -d /wheels ] && ls /wheels/*.whl >/dev/null 2>&1; then \
      set -- --no-index --find-links /wheels; \
    fi; \
    python3 -m pip --python /opt/venv/bin/python install "$@" --no-deps . \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
 && /opt/venv/bin/csi-xloud --version \
 && if /opt/venv/bin/python -c "import pip" 2>/dev/null; then exit 1; fi

FROM ${PYTHON_IMAGE} AS runtime
# Node tools: mkfs.ext4/resize2fs/e2fsck (e2fsprogs), mkfs.xfs/xfs_growfs (xfsprogs),
# blkid/findmnt/wipefs (util-linux, whose libblkid.so.1 the node plugin also loads to probe disks
# in its own process), mount/umount/losetup (mount), udevadm (udev; with the
# stand-alone sysusers instead of all of systemd). dpkg leaves out documentation, translations,
# and xfs_scrub with the ICU data only it loads (37 MB): the node plugin never scrubs.
# The base's pip (and setuptools, where it has them) go: nothing installs at run time.
RUN printf '%s\n' \
      'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
      'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
      'path-exclude=/usr/share/locale/*' \
      'path-exclude=/usr/sbin/xfs_scrub*' 'path-exclude=/usr/lib/*/libicu*' \
      > /etc/dpkg/dpkg.cfg.d/csi-xloud-slim \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      e2fsprogs xfsprogs util-linux mount udev systemd-standalone-sysusers ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && if python3 -m pip --version >/dev/null 2>&1; then \
      python3 -m pip uninstall -y -q --root-user-action=ignore pip setuptools wheel; \
    fi \
 && if python3 -c "import pip" 2>/dev/null; then exit 1; fi
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
ENTRYPOINT ["csi-xloud"]
CMD ["--help"]
# Last, so that a new commit reuses every layer above.
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="csi-xloud" \
      org.opencontainers.image.description="Kubernetes CSI driver for Xloud Block Storage (block.csi.xloud.tech)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Xloud" \
      org.opencontainers.image.source="https://github.com/xloud/csi-xloud" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# The emulator image (target "emulator", for the chart's evaluation install): the driver image plus
# the `emulator` extra's packages, pinned with hashes in deploy/image/requirements-emulator.txt, and
# the csi_xloud.emulator and csi_xloud.demo packages, which come from the named build context
# "emulator-src" (the csi_xloud folder; the main context leaves them out). The driver image's tools
# are all the emulator runs (losetup, blockdev, cp). It is built on the driver's stages and adds one
# layer: the files this stage adds to the driver's virtualenv, nothing else.
FROM build AS emulator-build
COPY deploy/image/requirements-emulator.txt ./requirements-emulator.txt
COPY --from=emulator-src emulator ./extra/emulator
COPY --from=emulator-src demo ./extra/demo
RUN --mount=type=secret,id=pip-conf \
    --mount=type=secret,id=pip-ca \
    set -eu; \
    if [ -s /run/secrets/pip-conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip-conf; fi; \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    if [ -d /wheels ] && ls /wheels/*.whl >/dev/null 2>&1; then \
      set -- --no-index --find-links /wheels; \
    fi; \
    touch /opt/before-extra; \
    python3 -m pip --python /opt/venv/bin/python install "$@" \
      --require-hashes --only-binary=:all: --no-deps -r requirements-emulator.txt; \
    purelib=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
    cp -r extra/emulator extra/demo "$purelib/csi_xloud/"; \
    find "$purelib/csi_xloud/emulator" "$purelib/csi_xloud/demo" -name __pycache__ -prune -exec rm -rf {} +; \
    /opt/venv/bin/python -m compileall -q /opt/venv/lib; \
    /opt/venv/bin/csi-xloud emulator --help >/dev/null; \
    mkdir /opt/added; \
    find /opt/venv -cnewer /opt/before-extra ! -type d -print0 \
      | tar --null --create --file - --files-from - | tar --directory /opt/added --extract --file -

FROM runtime AS emulator
COPY --from=emulator-build /opt/added/ /
CMD ["emulator", "--help"]
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="csi-xloud-emulator" \
      org.opencontainers.image.description="The csi-xloud driver with its Xloud emulator, for evaluation only (Identity, Storage and Compute APIs on loop devices)" \
      org.opencontainers.image.version="${VERSION}"

# The default target: the driver image.
FROM runtime AS driver
