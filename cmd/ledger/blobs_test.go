package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	const day = 24 * time.Hour
	for _, tt := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"15y", (15*365 + 4) * day, ""},
		{"1y", 366 * day, ""},
		{"4y", (4*365 + 1) * day, ""},
		{"100y", (100*365 + 25) * day, ""},
		{"90d", 90 * day, ""},
		{"36h", 36 * time.Hour, ""},
		{"30s", 30 * time.Second, ""},
		{"0s", 0, "at least 1s"},
		{"101y", 0, "at most 100 years"},
		{"36526d", 0, "at most 100 years"},
		{"99999999999999999999s", 0, "at most 100 years"},
		{"6m", 0, "months differ"},
		{"15", 0, "a whole number and a unit"},
		{"y", 0, "a whole number and a unit"},
		{"-1d", 0, "a whole number and a unit"},
		{"1.5y", 0, `unknown unit ".5y"`},
		{"15Y", 0, `unknown unit "Y"`},
		{"", 0, "a whole number and a unit"},
	} {
		got, err := parseRetention(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("parseRetention(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseRetention(%q) = %v, %v; want an error saying %q", tt.in, got, err, tt.err)
		}
	}
	// Whatever the start, n years of retention never end before n calendar years.
	for n := int64(1); n <= 40; n++ {
		d, err := parseRetention(strconv.FormatInt(n, 10) + "y")
		if err != nil {
			t.Fatal(err)
		}
		for start := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC); start.Year() < 2004; start = start.Add(7 * day) {
			if end := start.Add(d); end.Before(start.AddDate(int(n), 0, 0)) {
				t.Errorf("%dy from %s ends %s, before %d calendar years", n, start.Format(time.DateOnly), end.Format(time.DateOnly), n)
			}
		}
	}
}
