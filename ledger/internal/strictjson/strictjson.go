// Package strictjson decodes the JSON that clients send, refusing what
// encoding/json would quietly accept: a member name given twice in one
// object, counting names that differ only in case as the same
// (encoding/json matches names without regard to case and keeps the last,
// so {"regulated": true, "Regulated": false} would mean what no reader of
// the text sees), bytes that are not UTF-8 (encoding/json turns
// them into U+FFFD, so what is stored is not what was sent), members the
// target type does not have, and anything after the value.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Decode decodes the single JSON value b holds into v, strictly.
func Decode(b []byte, v any) error {
	if err := Check(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// Check reports an error if b is not UTF-8 or has an object with a member
// name given twice (in any case). It does not otherwise validate b: Decode leaves that to
// encoding/json, whose messages are the usual ones.
func Check(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("the JSON is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	// One set of names per object being read; arrays push nil.
	var stack []map[string]bool
	expectKey := false
	for {
		t, err := dec.Token()
		if err != nil {
			// The end, or malformed JSON, which Decode then reports.
			return nil
		}
		switch t := t.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, map[string]bool{})
				expectKey = true
				continue
			case '[':
				stack = append(stack, nil)
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		case string:
			if expectKey {
				names := stack[len(stack)-1]
				lower := strings.ToLower(t)
				if names[lower] {
					return fmt.Errorf("key %q appears twice in one object (keys are matched without regard to case)", t)
				}
				names[lower] = true
				expectKey = false
				continue
			}
		}
		// After a value inside an object comes a name again.
		expectKey = len(stack) > 0 && stack[len(stack)-1] != nil
	}
}
