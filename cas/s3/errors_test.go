package s3store

import (
	"errors"
	"net/http"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tracealm/evidence-ledger/cas"
)

// TestExplainTransient checks that the failures S3 clients retry are
// ErrUnavailable (the node answers 503 with Retry-After), and others not.
func TestExplainTransient(t *testing.T) {
	s := &Store{endpoint: "http://s3.example", bucket: "evidence"}
	answer := func(status int, code string) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      &smithy.GenericAPIError{Code: code, Message: "x"},
		}}
	}
	for _, tc := range []struct {
		status      int
		code        string
		unavailable bool
	}{
		{500, "InternalError", true},
		{503, "SlowDown", true},
		{503, "ServiceUnavailable", true},
		{502, "", true},
		{504, "", true},
		{500, "", true},
		{499, "UnknownError", true}, // MinIO, shutting down
		{403, "AccessDenied", false},
		{404, "NoSuchBucket", false},
		{400, "InvalidArgument", false},
	} {
		err := s.explain("reading blob x", answer(tc.status, tc.code))
		if got := errors.Is(err, cas.ErrUnavailable); got != tc.unavailable {
			t.Errorf("%d %s: unavailable = %v, want %v (%v)", tc.status, tc.code, got, tc.unavailable, err)
		}
	}
}
