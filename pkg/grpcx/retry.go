package grpcx

// RetryServiceConfig is the gRPC service config Furrow's clients should
// dial with (grpc.WithDefaultServiceConfig): every method of the four
// services is retried on UNAVAILABLE, up to five attempts with
// exponential backoff (0.1 s, doubling, at most 2 s, jittered by gRPC).
//
// Retrying is safe because every command is idempotent by its request id
// (a retry returns the first result and writes nothing), and UNAVAILABLE
// is what a replica that is shutting down or restarting, or an event log
// that did not answer, returns. Other codes are not retried: they are
// answers. The same JSON is in README.md for clients in other languages.
const RetryServiceConfig = `{
  "methodConfig": [{
    "name": [
      {"service": "furrow.procurement.v1.ProcurementService"},
      {"service": "furrow.brand.v1.BrandService"},
      {"service": "furrow.ledger.v1.LedgerService"},
      {"service": "furrow.admin.v1.AdminService"}
    ],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`
