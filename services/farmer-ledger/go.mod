module github.com/furrow/furrow/services/farmer-ledger

go 1.26
