package main

import (
	"math"
	"time"
)

// Latencies are kept in a histogram of fixed size whose buckets grow by
// 1%, from 1 µs to about an hour: percentiles are within 1% of the exact
// ones, whatever the number of samples.
const (
	histMin    = time.Microsecond
	histGrowth = 1.01
	histSize   = 2300 // 1.01^2300 µs ≈ 2.2 hours
)

// histogram counts durations. The zero value is empty and usable; it is
// not safe for concurrent use (each session has its own, merged at the
// end).
type histogram struct {
	counts []int64
	n      int64
	sum    time.Duration
	max    time.Duration
}

// bucketOf returns the bucket of d: 0 for below histMin, else i such that
// d < histMin·1.01^i.
func bucketOf(d time.Duration) int {
	if d < histMin {
		return 0
	}
	i := int(math.Log(float64(d)/float64(histMin))/math.Log(histGrowth)) + 1
	return min(i, histSize-1)
}

// upperOf is the upper bound of bucket i.
func upperOf(i int) time.Duration {
	return time.Duration(float64(histMin) * math.Pow(histGrowth, float64(i)))
}

func (h *histogram) add(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]int64, histSize)
	}
	h.counts[bucketOf(d)]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]int64, histSize)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q ≤ 1): the upper bound of the
// bucket holding the sample of rank ⌈q·n⌉, never above the maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(upperOf(i), h.max)
		}
	}
	return h.max
}

// Latency is a summary of latencies, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func (h *histogram) summary() Latency {
	if h.n == 0 {
		return Latency{}
	}
	return Latency{Count: h.n, Mean: ms(h.sum / time.Duration(h.n)), P50: ms(h.quantile(0.50)),
		P90: ms(h.quantile(0.90)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
