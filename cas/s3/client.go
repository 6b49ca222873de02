package s3store

import "github.com/aws/aws-sdk-go-v2/service/s3"

// Client returns the S3 client the store sends its requests with, set up from the store's
// Options (endpoint, region, credentials, addressing style), for code that keeps other objects
// in the same service, such as a log's published tiles. Requests made with it bypass the store:
// its checks, retention and key layout.
func (s *Store) Client() *s3.Client { return s.client }
