// Package atomicfile writes files so that readers see the old contents or
// the new ones, never a part: to a temporary file beside the target, synced,
// then renamed over it.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteStream writes what write produces to path atomically, with the
// given mode (set before any byte is written, so a private file never
// exists with a wider mode). It returns write's byte count; errors name
// path.
func WriteStream(path string, mode os.FileMode, write func(io.Writer) (int64, error)) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	defer os.Remove(f.Name())
	err = f.Chmod(mode)
	var n int64
	if err == nil {
		n, err = write(f)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// Write writes data to path atomically, with the given mode.
func Write(path string, data []byte, mode os.FileMode) error {
	_, err := WriteStream(path, mode, func(w io.Writer) (int64, error) {
		n, err := w.Write(data)
		return int64(n), err
	})
	return err
}
