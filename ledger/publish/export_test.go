package publish

// Steps returns how many times w has looked at its log (and published if
// there was something to publish) since it was created.
func Steps(w *Watcher) uint64 { return w.steps.Load() }
