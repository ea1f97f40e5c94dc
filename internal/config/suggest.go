package config

import (
	"fmt"
	"strings"
)

// didYouMean returns `; did you mean "x"?` naming the candidate closest to
// got, or "" when none is close enough to be a plausible typo.
func didYouMean(got string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		dist := editDistance(strings.ToLower(got), strings.ToLower(c))
		if bestDist < 0 || dist < bestDist {
			best, bestDist = c, dist
		}
	}
	// Allow roughly one edit per four characters: "upstrem" → "upstream"
	// is a typo, "read_timeout" → "idle_timeout" is a different field.
	if bestDist < 0 || bestDist == 0 && best == got || bestDist > max(1, len(got)/4) {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// editDistance counts the single-byte insertions, deletions, substitutions
// and swaps of adjacent bytes that turn a into b (optimal string alignment).
// Swaps count as one edit because "wieght" is one slip, not two.
func editDistance(a, b string) int {
	// rows[i][j] is the distance between a[:i] and b[:j]; only three rows
	// are live at a time.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
