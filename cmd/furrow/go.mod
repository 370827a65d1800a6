module github.com/furrow/furrow/cmd/furrow

go 1.26
