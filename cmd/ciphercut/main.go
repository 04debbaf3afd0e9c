// Command ciphercut compiles ONNX models for CKKS homomorphic encryption and
// runs, inspects and checks them. Run `ciphercut help` for the commands.
package main

import (
	"fmt"
	"net/http"
	_ "net/http/pprof" // served only when CIPHERCUT_PPROF names an address
	"os"
	"runtime/debug"

	"github.com/ciphercut/ciphercut/runtime/local"

	"github.com/spf13/cobra"
)

func main() {
	// Encrypted runs allocate large buffers at a high rate; without a soft
	// limit the heap grows to twice the live data before the collector
	// runs. Keep it within the memory the system has (GOMEMLIMIT wins).
	if os.Getenv("GOMEMLIMIT") == "" {
		if avail := local.MemoryAvailable(); avail > 0 {
			debug.SetMemoryLimit(avail / 10 * 9)
		}
	}
	if addr := os.Getenv("CIPHERCUT_PPROF"); addr != "" {
		// Profiling a long encrypted run while it works: go tool pprof
		// http://ADDR/debug/pprof/profile?seconds=60 (heap, goroutine too).
		go func() {
			if err := http.ListenAndServe(addr, nil); err != nil {
				fmt.Fprintln(os.Stderr, "ciphercut: CIPHERCUT_PPROF:", err)
			}
		}()
	}
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ciphercut:", err)
		os.Exit(1)
	}
}

// newRoot builds the command tree.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "ciphercut",
		Short: "Run neural networks on encrypted data",
		Long: "ciphercut reads ONNX models into a tensor IR, checks them with a float64 reference\n" +
			"interpreter and compiles them for CKKS homomorphic encryption.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(demoCmd(), compileCmd(), runCmd(), evalCmd(), inspectCmd(), inferCmd(), conformanceCmd(),
		calibrateCmd(), reportCmd(), shardCmd(), workerCmd(), identityCmd(), tokenCmd(), generateCmd())
	return root
}
