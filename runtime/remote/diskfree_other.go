//go:build !linux && !darwin

package remote

// diskFree is unknown (-1) where statfs is not available.
func diskFree(string) int64 { return -1 }
