//go:build !unix

package badgerwal

// lockDir does nothing where badger's directory lock is not flock.
func lockDir(dir string) (release func(), err error) { return func() {}, nil }
