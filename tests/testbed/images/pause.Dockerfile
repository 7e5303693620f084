# pause: the pod sandbox process (containerd's sandbox image).
# The test bed packs this image itself with tools/oci-image and imports it
# into containerd (no engine, no registry); this file is for users whose
# cluster loads images built by an engine, e.g. for a kind cluster:
#
#   BIN=$(bash tests/testbed/build.sh node | tail -n 1)
#   docker build -f tests/testbed/images/pause.Dockerfile -t csi-testbed.local/pause:v0 "$BIN"
#   kind load docker-image csi-testbed.local/pause:v0
#
# The binary is static (CGO_ENABLED=0), so the base needs no libc.
FROM gcr.io/distroless/static-debian12
COPY pause /pause
ENTRYPOINT ["/pause"]
