// Package deploy checks Furrow's deployment files against the binaries
// they run, since neither Docker nor a Kubernetes cluster runs where
// Furrow is tested (see README.md beside this file).
//
// It holds no code of its own: its tests load docker-compose.yml with the
// compose-spec loader and decode every manifest under k8s/ strictly into
// the Kubernetes API types, then check that each Furrow binary is given
// only the flags and FURROW_* variables it reads (taken from the -h output
// of binaries built from this repository), that each file a container
// mounts from the repository exists, and that every probe targets a port
// the container declares. It is a module of its own so that the
// compose-spec and Kubernetes libraries stay out of the services' modules.
package deploy
