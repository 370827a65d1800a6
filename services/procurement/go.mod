module github.com/furrow/furrow/services/procurement

go 1.26
