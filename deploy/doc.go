// Package deploy holds how Warden is shipped and run, and the tests that
// build and run each form for real: the static binary scripts/build.sh
// stamps, the OCI image of Containerfile (built with buildah, run with
// podman), the Helm chart in helm/warden (linted and rendered with Helm v4,
// pinned in tools/go.mod, a module of its own so that Helm's dependencies
// stay out of Warden's) and the systemd unit in systemd/. The README's
// "Deploying" section is the guide; this package has no Go API.
package deploy
