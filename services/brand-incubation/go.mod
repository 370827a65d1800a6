module github.com/furrow/furrow/services/brand-incubation

go 1.26
