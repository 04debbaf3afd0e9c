package passes

import "github.com/ciphercut/ciphercut/ir"

// Prune removes dead nodes: those no graph output depends on (see
// ir.Graph.Prune). Graph inputs stay, even when nothing reads them.
func Prune(g *ir.Graph) error {
	g.Prune()
	return nil
}
