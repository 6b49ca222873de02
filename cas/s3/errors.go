package s3store

import (
	"errors"
	"fmt"
	"net"
	"net/http"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/tracealm/evidence-ledger/cas"
)

// errorCode returns the S3 error code of err ("NoSuchKey", "AccessDenied", ...), or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// httpStatus returns the HTTP status of the response that gave err, or 0 if there was none.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// statusServerClosed is the status MinIO (and nginx in front of a
// server) answers a request it dropped unfinished, as it does to the
// requests in flight when it shuts down.
const statusServerClosed = 499

// transientStatus reports whether an HTTP status is a server's failure
// that S3 clients retry (AWS asks them to retry 500 InternalError and
// 503 SlowDown), or a gateway's in front of it, or a request the server
// dropped unfinished.
func transientStatus(status int) bool {
	switch status {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, statusServerClosed:
		return true
	}
	return false
}

// isNotFound reports whether err says the object (or the version asked for) does not exist.
// HEAD responses carry no body, so only their status tells.
func isNotFound(err error) bool {
	switch errorCode(err) {
	case "NoSuchKey", "NotFound", "NoSuchVersion":
		return true
	}
	return httpStatus(err) == http.StatusNotFound && errorCode(err) != "NoSuchBucket"
}

// explain turns an error from the server into one that says what was wrong and what to do,
// wrapping err. doing says what was being done ("opening bucket x", "reading blob y").
func (s *Store) explain(doing string, err error) error {
	var (
		opErr  *net.OpError
		dnsErr *net.DNSError
	)
	switch code := errorCode(err); {
	case errors.As(err, &dnsErr) || errors.As(err, &opErr):
		return fmt.Errorf("s3 blob store: %s: cannot reach the S3 endpoint %s: check the endpoint URL and that the server is running and reachable: %w: %w", doing, s.endpoint, cas.ErrUnavailable, err)
	case code == "ServiceUnavailable" || code == "SlowDown" || code == "XMinioServerNotInitialized" || code == "InternalError" || transientStatus(httpStatus(err)):
		return fmt.Errorf("s3 blob store: %s: the S3 endpoint %s is unavailable (%s): retry shortly: %w: %w", doing, s.endpoint, code, cas.ErrUnavailable, err)
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "InvalidToken" || code == "ExpiredToken":
		return fmt.Errorf("s3 blob store: %s: %s refused the credentials of access key %q (%s): check the access and secret keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): %w", doing, s.endpoint, s.accessKey, code, err)
	case code == "AccessDenied" || code == "Forbidden":
		return fmt.Errorf("s3 blob store: %s: access key %q may not do this in bucket %q on %s: grant it the object and Object Lock permissions on the bucket: %w", doing, s.accessKey, s.bucket, s.endpoint, err)
	case code == "NoSuchBucket" && !s.worm:
		return fmt.Errorf("s3 blob store: %s: bucket %q does not exist on %s: create it, or check its name and region: %w", doing, s.bucket, s.endpoint, err)
	case code == "NoSuchBucket":
		return fmt.Errorf("s3 blob store: %s: bucket %q does not exist on %s: create it with Object Lock enabled, or check its name and region: %w", doing, s.bucket, s.endpoint, err)
	}
	return fmt.Errorf("s3 blob store: %s in bucket %q on %s: %w", doing, s.bucket, s.endpoint, err)
}
