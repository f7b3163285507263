// Package delta will hold the delta update formats: producing them on the
// publisher side (used by the repository tool) and applying them on the
// device as a stream, with memory bounded independently of image size.
//
// Two kinds are planned. An adaptive delta reuses every chunk of a signed
// chunk index that the device already holds, in the running slot or the
// inactive one, and fetches only the missing chunks from a static server.
// A static patch turns one known base release, named by its TUF target
// hash, into the new image. Either way the result is verified against the
// TUF target of the full image before anything is activated, and the
// updater falls back to the full image on any failure.
package delta
