package akcli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the version that "agentkey version" reports and the server
// exposes. Release builds set it with
// -ldflags "-X github.com/agentkey-go/agentkey/akcli.Version=v1.2.3"; when it
// is empty, the module version and VCS revision from the build are used.
var Version string

// version returns Version, or what the build recorded.
func version() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		v = "(devel) " + rev[:min(12, len(rev))] + modified
	}
	return firstOf(v, "(devel)")
}

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  args(),
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(c.stdout, "agentkey %s %s %s/%s\n", version(), runtime.Version(),
				runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
