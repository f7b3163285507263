// Package oci updates applications shipped as OCI container images, signed
// through TUF and pulled from a container registry.
//
// The protocol: the TUF target of a release is the image's manifest (or
// multi-platform index) exactly as the registry serves it, and its custom
// metadata ([verify.OCI]) names the registry repository and maps index
// platforms to hardware ids. The updater downloads and verifies that small
// document like any other image and writes it into a [Component] slot.
// Arming the slot selects the platform for this hardware, pulls the
// config and layers from the registry by digest only, verifies each blob
// against its digest before use, keeps blobs already present (the layer
// delta), stores them in an OCI image layout and unpacks them into the
// slot's runtime bundle. Signing the manifest signs everything else through
// the digest chain, so the registry is trusted with availability only.
//
// Threat model: a registry (or anything between it and the device) that
// serves other bytes for a digest is caught before the bytes are used, and
// nothing is activated; a layer that tries to write outside its root
// (".." or absolute paths, writes through symlinks), or holds device
// nodes, is refused with [ErrUnsafeLayer].
//
// Activation is A/B, built on [slots.File] for the manifest: the running
// slot's bundle is never touched, and the previous image stays until the
// new one is committed. [Runc] starts a slot's bundle with runc, and
// [Runc.HealthCheck] reports whether it runs and answers its own check;
// [Systemd] does the same through a systemd unit that runs runc, over
// systemd's D-Bus API.
//
// One download client: the registry's auth (ping, token, basic) is
// go-containerregistry's transport, and every request crosses
// switchback's download client. Every manifest and blob byte goes through
// it under the rules of every other transfer of the device (stall and
// low-speed limits, Pause, rate limit, retries with backoff and
// Retry-After, Range resume); the auth transport's own requests (the ping
// of /v2/, the token exchange and each refresh of a token on a 401) go
// under its rules for small requests (Pause before each attempt, the same
// retries, stall and low-speed limits, a bounded body, the
// MetadataTimeout deadline), through the same client, so one Pause and
// one rate limit govern both; see [RegistryConfig].
package oci
