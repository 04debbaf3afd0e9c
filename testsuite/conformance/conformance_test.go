package conformance

import (
	"io"
	"strings"
	"testing"
)

// TestONNXBackendSuite runs every bundled ONNX backend node case: none may
// fail, every skip must say why, and the suite must keep its coverage.
func TestONNXBackendSuite(t *testing.T) {
	s, err := Run("../onnx", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.Results {
		switch {
		case r.Status == Failed:
			t.Errorf("%s: %s", r.Case, r.Detail)
		case r.Status == Skipped && !strings.Contains(r.Detail, "unsupported"):
			t.Errorf("%s skipped without naming what is unsupported: %q", r.Case, r.Detail)
		}
	}
	t.Log(s)
	if s.Passed < 150 {
		t.Errorf("only %d cases pass, want at least 150", s.Passed)
	}
}

// TestEncryptedCases runs a few cases of the CKKS subset encrypted at
// 128-bit security (the whole suite runs with `ciphercut conformance
// --encrypted testsuite/onnx`), among them cases without a batch axis of 1
// (Gemm on [2, 7], BatchNormalization on [2, 3, 4, 5], Sigmoid on [3, 4, 5]),
// which compile with LowerOptions.WholeTensor.
func TestEncryptedCases(t *testing.T) {
	if testing.Short() {
		t.Skip("encrypted cases take seconds each; skipped in -short mode")
	}
	for _, c := range []string{
		"test_conv_with_strides_padding",
		"test_averagepool_2d_strides",
		"test_globalaveragepool",
		"test_single_relu_model",
		"test_gemm_default_vector_bias",
		"test_batchnorm_example",
		"test_sigmoid",
	} {
		r := RunEncryptedCase("../onnx/" + c)
		if r.Status != Passed {
			t.Errorf("%s: %s %s", c, r.Status, r.Detail)
		} else {
			t.Logf("%s: %s", c, r.Detail)
		}
	}
}
