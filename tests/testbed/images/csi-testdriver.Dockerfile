# csi-testdriver: the CSI test driver (a node plugin: runs privileged, as root).
# The test bed packs this image itself with tools/oci-image and imports it
# into containerd (no engine, no registry); this file is for users whose
# cluster loads images built by an engine, e.g. for a kind cluster:
#
#   BIN=$(bash tests/testbed/build.sh node | tail -n 1)
#   docker build -f tests/testbed/images/csi-testdriver.Dockerfile -t csi-testbed.local/csi-testdriver:v0 "$BIN"
#   kind load docker-image csi-testbed.local/csi-testdriver:v0
#
# The binary is static (CGO_ENABLED=0), so the base needs no libc.
FROM gcr.io/distroless/static-debian12
COPY csi-testdriver /csi-testdriver
ENTRYPOINT ["/csi-testdriver"]
