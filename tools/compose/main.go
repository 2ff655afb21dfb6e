// Command compose-check loads a compose file the way `docker compose` does (compose-go,
// pinned in go.mod): interpolation, merge keys, then validation against the Compose
// Specification's JSON schema. It exits non-zero with the loader's message on any error.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE [NAME=VALUE...]")
		os.Exit(2)
	}
	path, err := filepath.Abs(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "compose-check:", err)
		os.Exit(2)
	}
	// Only the variables given: the check must not depend on the caller's shell.
	environment := map[string]string{}
	for _, pair := range os.Args[2:] {
		for i := 0; i < len(pair); i++ {
			if pair[i] == '=' {
				environment[pair[:i]] = pair[i+1:]
				break
			}
		}
	}
	details := types.ConfigDetails{
		WorkingDir:  filepath.Dir(path),
		ConfigFiles: []types.ConfigFile{{Filename: path}},
		Environment: environment,
	}
	project, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("compose-check", true)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "compose-check:", err)
		os.Exit(1)
	}
	fmt.Println(len(project.Services))
}
