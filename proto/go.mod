module github.com/furrow/furrow/proto

go 1.26
