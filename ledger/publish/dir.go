package publish

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Dir is a Destination in a local directory, for a web server to serve or
// a copy to carry. It writes each file to a temporary file beside it,
// syncs it, renames it into place and syncs the directory, so a file is
// whole and durable before Write returns. The directory is created if need
// be; an interrupted Write may leave a ".publish-*" temporary file.
type Dir string

var _ Destination = Dir("")

// Read returns the content of the file at path under the directory.
func (d Dir) Read(_ context.Context, path string) ([]byte, error) {
	name, err := d.name(path)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(name)
}

// Write writes f under the directory, atomically and durably.
func (d Dir) Write(_ context.Context, f File) error {
	name, err := d.name(f.Path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(name)
	if err := d.mkdirs(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".publish-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.Write(f.Data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err == nil {
		err = syncDir(dir)
	}
	return err
}

// name returns the file name of path under the directory, refusing paths
// that would leave it.
func (d Dir) name(path string) (string, error) {
	if !fs.ValidPath(path) || strings.Contains(path, `\`) {
		return "", fmt.Errorf("publishing to %s: invalid path %q", string(d), path)
	}
	return filepath.Join(string(d), filepath.FromSlash(path)), nil
}

// mkdirs creates dir and any missing parent, syncing the parent of each
// directory it creates so that the new entries survive a crash.
func (d Dir) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := d.mkdirs(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return syncDir(parent)
}

// syncDir flushes dir's entries to stable storage.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
