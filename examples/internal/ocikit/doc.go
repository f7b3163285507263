// Package ocikit holds what the container examples share: a
// docker-registry process on 127.0.0.1, skopeo copies in and out of it, an
// OCI layout with one big layer, and the pull of such an image through
// package oci, timed. examples/containers and examples/bench use it; it
// needs the Debian packages docker-registry and skopeo, and root to
// unpack.
package ocikit
