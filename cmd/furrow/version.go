package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// versionText describes the build in one line: the version (main.version
// when the build set it, else the module's), the VCS revision and commit
// time the binary was built from, whether the tree had uncommitted changes,
// and the Go toolchain. `go build` records the VCS facts in a checkout; a
// build without them (no .git, -buildvcs=false) says "revision unknown".
func versionText(bi *debug.BuildInfo) string {
	v := version
	settings := map[string]string{}
	goVersion := runtime.Version()
	if bi != nil {
		if v == "dev" && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
	}
	parts := []string{"furrow " + v}
	if rev := settings["vcs.revision"]; rev != "" {
		if settings["vcs.modified"] == "true" {
			rev += " (modified)"
		}
		parts = append(parts, "revision "+rev)
	} else {
		parts = append(parts, "revision unknown")
	}
	if t := settings["vcs.time"]; t != "" {
		parts = append(parts, "committed "+t)
	}
	parts = append(parts, fmt.Sprintf("%s %s/%s", goVersion, runtime.GOOS, runtime.GOARCH))
	return strings.Join(parts, ", ")
}

// buildInfo is the running binary's build information, nil if absent.
func buildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}
